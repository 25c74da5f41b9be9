# EVAD, ViT-L/16 VideoMAE, keep rate 0.7, 16x4 clips, short side 288, AVA v2.2.
# Paper (K700 pre-training): 39.7 frame-mAP@0.5, 737 GFLOPs. mmaction2 ships a
# K400 ViT-L recogniser, used here as initialisation.
_base_ = ['./evad_vitb_ava.py']
pretrained = ('https://download.openmmlab.com/mmaction/v1.0/recognition/'
              'videomae/vit-large-p16_videomae-k400-pre_16x4x1_kinetics-400_'
              '20221013-229dbb03.pth')
model = dict(
    backbone=dict(
        embed_dims=1024,
        depth=24,
        num_heads=16,
        drop_path_rate=0.2,
        prune_layers=(6, 12, 18),
        out_indices=(5, 11, 17, 23),
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=1024),
    action_head=dict(
        in_channels=1024,
        embed_dims=512,
        depth=12,
        num_heads=8,
        loss_weight=6.))  # the authors' ViT-L weight (ViT-B: 12)
optim_wrapper = dict(optimizer=dict(lr=1e-5))
auto_scale_lr = dict(base_batch_size=8)
train_dataloader = dict(batch_size=1)
# short of GPU memory: `--cfg-options model.backbone.with_cp=True` recomputes
# every encoder block in the backward pass (same gradients, less memory)
