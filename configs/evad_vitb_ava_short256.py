# EVAD ViT-B, keep rate 0.7, clips resized to short side 256.
_base_ = ['./evad_vitb_ava.py']
short_side = 256
# the AVA pipelines with this short side
train_pipeline, val_pipeline = (
    [dict(t, scale=(1333, short_side)) if t['type'] == 'Resize' else t
     for t in pipeline]
    for pipeline in (_base_.train_pipeline, _base_.val_pipeline))
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader
