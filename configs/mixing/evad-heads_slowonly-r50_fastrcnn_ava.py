# EVAD's context refinement head and extended 3-D RoIAlign on mmaction2's
# stock two-stage AVA detector: FastRCNN (mmdet scope) with person proposals
# from a file and a SlowOnly-R50 backbone. Only the RoI head changes.
_base_ = [
    'mmaction::detection/slowonly/'
    'slowonly_kinetics400-pretrained-r50_8xb16-4x16x1-20e_ava21-rgb.py',
    '../_base_/models/context_refinement_roi_head.py'
]
custom_imports = dict(imports=['evad_mm'], allow_failed_imports=False)

model = dict(
    roi_head=dict(
        _base_.context_refinement_roi_head,
        _delete_=True,
        bbox_head=dict(
            _base_.context_refinement_roi_head.bbox_head,
            in_channels=2048,
            pos_grid=(4, 16, 16))))
