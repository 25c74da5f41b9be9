# EVAD, ViT-B/16 VideoMAE (K400), keep rate 0.7, 16x4 clips, short side 288,
# AVA v2.2. Paper: 32.3 frame-mAP@0.5, 243 GFLOPs.
_base_ = [
    'mmaction::_base_/default_runtime.py', '_base_/models/evad_vit-b.py',
    '_base_/datasets/ava_v2.2_evad.py', '_base_/schedules/evad_adamw_12e.py'
]
custom_imports = dict(imports=['evad_mm'], allow_failed_imports=False)

# mmaction2's VideoMAE ViT-B K400 recogniser; its `backbone.*` weights load
# into EVADViT unchanged (its `fc_norm` has no counterpart: `norm` is new).
pretrained = ('https://download.openmmlab.com/mmaction/v1.0/recognition/'
              'videomae/vit-base-p16_videomae-k400-pre_16x4x1_kinetics-400_'
              '20221013-860a3cd3.pth')
model = dict(
    backbone=dict(
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')))

# Empty or single-actor batches leave some parameters without gradient.
model_wrapper_cfg = dict(type='MMDistributedDataParallel',
                         find_unused_parameters=True)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=2,
                                     save_best='auto'))
randomness = dict(seed=0)
custom_hooks = [dict(type='InvalidLossHook', interval=1)]
