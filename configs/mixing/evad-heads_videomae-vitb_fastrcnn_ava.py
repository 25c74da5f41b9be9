# EVAD's context refinement head and extended 3-D RoIAlign on mmaction2's
# VideoMAE ViT-B AVA(-Kinetics) detector: FastRCNN with person proposals and
# mmaction2's VisionTransformer (return_feat_map=True). Only the RoI head
# changes.
_base_ = [
    'mmaction::detection/videomae/'
    'vit-base-p16_videomae-k400-pre_8xb8-16x4x1-20e-adamw_'
    'ava-kinetics-rgb.py', '../_base_/models/context_refinement_roi_head.py'
]
custom_imports = dict(imports=['evad_mm'], allow_failed_imports=False)

model = dict(
    roi_head=dict(
        _base_.context_refinement_roi_head,
        _delete_=True,
        bbox_head=dict(
            _base_.context_refinement_roi_head.bbox_head,
            in_channels=768,
            pos_grid=(8, 14, 14))))
