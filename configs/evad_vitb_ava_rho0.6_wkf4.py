# EVAD ViT-B, keep rate 0.6 with keyframe attentiveness weight 4.
# Paper: 31.8 mAP, 209 GFLOPs.
_base_ = ['./evad_vitb_ava.py']
model = dict(backbone=dict(keep_rate=0.6, keyframe_weight=4.0))
