# EVAD's context refinement head and extended 3-D RoIAlign on mmaction2's
# VideoMAE ViT-B AVA(-Kinetics) detector: FastRCNN with person proposals and
# mmaction2's VisionTransformer (return_feat_map=True). Only the RoI head
# changes.
_base_ = ('mmaction::detection/videomae/'
          'vit-base-p16_videomae-k400-pre_8xb8-16x4x1-20e-adamw_'
          'ava-kinetics-rgb.py')
custom_imports = dict(imports=['evad_mm'], allow_failed_imports=False)

model = dict(
    roi_head=dict(
        _delete_=True,
        type='ContextRefinementRoIHead',
        bbox_roi_extractor=dict(
            type='ExtendedRoIExtractor3D',
            extend_ratio=(0.4, 0.2),
            featmap_stride=16,
            output_size=7,
            sampling_ratio=2),
        bbox_head=dict(
            type='ContextRefinementHead',
            num_classes=81,
            in_channels=768,
            embed_dims=384,
            depth=6,
            num_heads=6,
            pos_grid=(8, 14, 14))))
