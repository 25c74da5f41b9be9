# EVAD's heads (query-based actors + context refinement) on a tiny 3-D CNN,
# trained from scratch on the built-in toy AVA data: the toy ViT's stem
# alone (mmaction2's ResNet3dSlowOnly, ResNet-18 layout, 16 base channels,
# 3 stages, stride 16, no temporal stride) in place of the ViT. Its
# stride-16 map feeds the keyframe pyramid (x4, x2, x1, x0.5) and context
# refinement. No token pruning (a CNN keeps every position). A control for
# configs/evad_toy_ava.py: same data, heads, schedule and metric.
_base_ = ['../evad_toy_ava.py']

model = dict(
    backbone=dict(_delete_=True, **_base_.resnet_stem),
    neck=dict(in_channels=64, scale_factors=(4, 2, 1, 0.5)),
    action_head=dict(in_channels=64, pos_grid=(8, 8, 10), actor_cells=8))
