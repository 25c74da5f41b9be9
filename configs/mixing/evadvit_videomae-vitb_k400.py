# Keyframe-centric token pruning for video recognition: EVADViT (keep rate
# 0.7, keyframe = middle slice, mean of the kept tokens) as the backbone of
# mmaction2's Recognizer3D with a linear head, on Kinetics-400 videos.
# Initialised from mmaction2's VideoMAE ViT-B K400 recogniser, whose weights
# load unchanged (backbone.* and cls_head.*).
_base_ = ['mmaction::_base_/default_runtime.py']
custom_imports = dict(imports=['evad_mm'], allow_failed_imports=False)

load_from = ('https://download.openmmlab.com/mmaction/v1.0/recognition/'
             'videomae/vit-base-p16_videomae-k400-pre_16x4x1_kinetics-400_'
             '20221013-860a3cd3.pth')
model = dict(
    type='Recognizer3D',
    backbone=dict(
        type='EVADViT',
        img_size=224,
        embed_dims=768,
        depth=12,
        num_heads=12,
        num_frames=16,
        drop_path_rate=0.1,
        prune_layers=(3, 6, 9),
        keep_rate=0.7,
        out_indices=(),  # no keyframe maps needed for recognition
        use_mean_pooling=True),
    cls_head=dict(
        type='TimeSformerHead',
        num_classes=400,
        in_channels=768,
        average_clips='prob'),
    data_preprocessor=dict(
        type='ActionDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        format_shape='NCTHW'))

dataset_type = 'VideoDataset'
data_root = 'data/kinetics400/videos_train'
data_root_val = 'data/kinetics400/videos_val'
ann_file_train = 'data/kinetics400/kinetics400_train_list_videos.txt'
ann_file_val = 'data/kinetics400/kinetics400_val_list_videos.txt'

train_pipeline = [
    dict(type='DecordInit'),
    dict(type='SampleFrames', clip_len=16, frame_interval=4, num_clips=1),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 256)),
    dict(type='RandomResizedCrop'),
    dict(type='Resize', scale=(224, 224), keep_ratio=False),
    dict(type='Flip', flip_ratio=0.5),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs')
]
val_pipeline = [
    dict(type='DecordInit'),
    dict(
        type='SampleFrames',
        clip_len=16,
        frame_interval=4,
        num_clips=1,
        test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 224)),
    dict(type='CenterCrop', crop_size=224),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs')
]
train_dataloader = dict(
    batch_size=8,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        ann_file=ann_file_train,
        data_prefix=dict(video=data_root),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        ann_file=ann_file_val,
        data_prefix=dict(video=data_root_val),
        pipeline=val_pipeline,
        test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type='AccMetric')
test_evaluator = val_evaluator

train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=10, val_begin=1, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
    paramwise_cfg=dict(flat_decay_mult=0.),
    clip_grad=dict(max_norm=40, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=9, by_epoch=True, begin=1, end=10,
         convert_to_iter_based=True)
]
auto_scale_lr = dict(enable=False, base_batch_size=64)
