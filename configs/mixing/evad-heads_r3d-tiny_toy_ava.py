# EVAD's heads (query-based actors + context refinement) on a tiny 3-D CNN,
# trained from scratch on the built-in toy AVA data: mmaction2's
# ResNet3dSlowOnly (ResNet-18 layout, 16 base channels, 3 stages, stride
# 16, no temporal stride) in place of the ViT. Its stride-16 map feeds the
# keyframe pyramid (x4, x2, x1, x0.5) and context refinement. No token
# pruning (a CNN keeps every position). A control for configs/
# evad_toy_ava.py: same data, heads, schedule and metric.
_base_ = ['../evad_toy_ava.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='ResNet3dSlowOnly',
        depth=18,
        base_channels=16,
        pretrained=None,
        pretrained2d=False,
        lateral=False,
        num_stages=3,
        out_indices=(2, ),
        stage_blocks=(2, 2, 2),
        conv1_kernel=(1, 7, 7),
        conv1_stride_t=1,
        pool1_stride_t=1,
        spatial_strides=(1, 2, 2),
        temporal_strides=(1, 1, 1),
        dilations=(1, 1, 1),
        inflate=(0, 0, 1)),
    neck=dict(in_channels=64, scale_factors=(4, 2, 1, 0.5)),
    action_head=dict(in_channels=64, pos_grid=(8, 8, 10)))
