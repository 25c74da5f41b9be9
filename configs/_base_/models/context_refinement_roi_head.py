# EVAD's context refinement head and extended 3-D RoIAlign as the RoI head of
# mmaction2's stock two-stage AVA detectors (FastRCNN with person proposals
# from a file). A detector config sets the backbone's channels and the
# decoder's position grid (t, h, w) of its feature map.
context_refinement_roi_head = dict(
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
        embed_dims=384,
        depth=6,
        num_heads=6))
