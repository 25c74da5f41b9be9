# EVAD's context refinement head and extended 3-D RoIAlign on mmaction2's
# stock two-stage AVA detector: FastRCNN (mmdet scope) with person proposals
# from a file and a SlowOnly-R50 backbone. Only the RoI head changes.
_base_ = ('mmaction::detection/slowonly/'
          'slowonly_kinetics400-pretrained-r50_8xb16-4x16x1-20e_ava21-rgb.py')
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
            in_channels=2048,
            embed_dims=384,
            depth=6,
            num_heads=6,
            pos_grid=(4, 16, 16))))
