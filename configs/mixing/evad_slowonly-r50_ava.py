# The EVAD detector (query-based actors + context refinement) on a 3-D CNN:
# mmaction2's SlowOnly-R50 returning all four stages. The keyframe slice of
# every stage feeds the pyramid (strides 4, 8, 16, 16 -> x0.5 makes 32); the
# last stage feeds context refinement. No token pruning (a CNN keeps all
# positions).
_base_ = ['../evad_vitb_ava.py']

slowonly_k400 = (
    'https://download.openmmlab.com/mmaction/v1.0/recognition/slowonly/'
    'slowonly_imagenet-pretrained-r50_8xb16-4x16x1-steplr-150e_kinetics400-'
    'rgb/slowonly_imagenet-pretrained-r50_8xb16-4x16x1-steplr-150e_'
    'kinetics400-rgb_20220901-e7b65fad.pth')
model = dict(
    data_preprocessor=dict(
        mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375]),
    backbone=dict(
        _delete_=True,
        type='ResNet3dSlowOnly',
        depth=50,
        pretrained=None,
        pretrained2d=False,
        lateral=False,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        conv1_kernel=(1, 7, 7),
        conv1_stride_t=1,
        pool1_stride_t=1,
        spatial_strides=(1, 2, 2, 1),
        init_cfg=dict(
            type='Pretrained', checkpoint=slowonly_k400,
            prefix='backbone.')),
    neck=dict(
        in_channels=[256, 512, 1024, 2048], scale_factors=(1, 1, 1, 0.5)),
    action_head=dict(in_channels=2048, pos_grid=(4, 14, 14)))

# SlowOnly's 4x16 clips at short side 256, otherwise the AVA pipelines
changes = dict(
    SampleAVAFrames=dict(clip_len=4, frame_interval=16),
    Resize=dict(scale=(1333, 256)))
train_pipeline, val_pipeline = (
    [dict(t, **changes.get(t['type'], {})) for t in pipeline]
    for pipeline in (_base_.train_pipeline, _base_.val_pipeline))
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader
