# configs/evad_toy_ava.py in EVAD's own layout: mmaction2's linear patch
# embedding (VideoMAE and the authors' checkpoints) and one box feature
# averaged over time, no BatchNorm (converter, FLOP and multi-process tests)
_base_ = ['../../configs/evad_toy_ava.py']

model = dict(
    backbone=dict(patch_embed_cfg=None),
    action_head=dict(
        actor_cells=1, roi_extractor=dict(roi_temporal_pool='avg')))
