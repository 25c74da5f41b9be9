# EVAD ViT-B without token pruning (keep rate 1.0). Paper: 32.1 mAP, 425 GFLOPs
_base_ = ['./evad_vitb_ava.py']
model = dict(backbone=dict(keep_rate=1.0))
