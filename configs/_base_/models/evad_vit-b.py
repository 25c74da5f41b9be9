# EVAD with a VideoMAE ViT-B/16 (paper: Sec. 3, Appendix B; notes: the
# authors' released ViT-B settings). 16 frames, tubelet 2 -> t = 8.
num_classes = 81  # AVA: 80 actions + mmaction2's unused column 0

model = dict(
    type='EVAD',
    data_preprocessor=dict(
        type='ActionDataPreprocessor',
        mean=[114.75, 114.75, 114.75],  # 0.45 * 255
        std=[57.375, 57.375, 57.375],  # 0.225 * 255
        format_shape='NCTHW'),
    size_divisor=32,
    # the total loss is divided by the number of loss terms, 3 per
    # localization stage and 1 per decoder block (24 here), as the authors do
    train_cfg=dict(normalize_losses=True),
    backbone=dict(
        type='EVADViT',
        img_size=224,
        patch_size=16,
        embed_dims=768,
        depth=12,
        num_heads=12,
        mlp_ratio=4.,
        qkv_bias=True,
        drop_path_rate=0.1,
        num_frames=16,
        tubelet_size=2,
        prune_layers=(3, 6, 9),
        keep_rate=0.7,
        keyframe_weight=1.0,
        out_indices=(2, 5, 8, 11)),
    neck=dict(
        type='KeyframePyramidNeck',
        in_channels=768,
        out_channels=256,
        scale_factors=(4, 2, 1, 0.5)),
    rpn_head=dict(
        type='EmbeddingRPNHead',
        num_proposals=100,
        proposal_feature_channel=256),
    roi_head=dict(
        type='ActorLocalizationHead',
        num_stages=6,
        stage_loss_weights=[1.] * 6,
        proposal_feature_channel=256,
        bbox_roi_extractor=dict(
            # mmdet's SingleRoIExtractor, in float32 under mixed precision
            type='Float32SingleRoIExtractor',
            roi_layer=dict(
                type='RoIAlign', output_size=7, sampling_ratio=2,
                aligned=True),
            out_channels=256,
            featmap_strides=[4, 8, 16, 32]),
        # one config for all stages: mmdet repeats a dict num_stages times
        bbox_head=dict(
            type='DIIHead',
            num_classes=1,  # person
            num_ffn_fcs=2,
            num_heads=8,
            num_cls_fcs=1,
            num_reg_fcs=3,
            feedforward_channels=2048,
            in_channels=256,
            dropout=0.0,
            ffn_act_cfg=dict(type='ReLU', inplace=True),
            dynamic_conv_cfg=dict(
                type='DynamicConv',
                in_channels=256,
                feat_channels=64,
                out_channels=256,
                input_feat_shape=7,
                act_cfg=dict(type='ReLU', inplace=True),
                norm_cfg=dict(type='LN')),
            # mmdet's DIIHead averages the class loss over the matched
            # boxes, as Sparse R-CNN does with a focal loss; the authors'
            # 2-way CE (no-object weight 0.1) averages over all boxes.
            # Both give a person probability; weights convert exactly
            # (sigmoid of the logit difference).
            loss_cls=dict(
                type='FocalLoss',
                use_sigmoid=True,
                gamma=2.0,
                alpha=0.25,
                loss_weight=2.0),
            loss_bbox=dict(type='L1Loss', loss_weight=5.0),
            loss_iou=dict(type='GIoULoss', loss_weight=2.0),
            bbox_coder=dict(
                type='DeltaXYWHBBoxCoder',
                clip_border=False,
                target_means=[0., 0., 0., 0.],
                target_stds=[0.5, 0.5, 1., 1.])),
        train_cfg=[
            dict(
                assigner=dict(
                    type='HungarianAssigner',
                    match_costs=[
                        dict(type='SigmoidClassificationCost', weight=2.0),
                        dict(type='BBoxL1Cost', weight=5.0,
                             box_format='xyxy'),
                        dict(type='IoUCost', iou_mode='giou', weight=2.0)
                    ]),
                sampler=dict(type='PseudoSampler'),
                pos_weight=1.) for _ in range(6)
        ],
        test_cfg=dict(max_per_img=100, score_thr=0.7)),
    action_head=dict(
        type='ContextRefinementHead',
        num_classes=num_classes,
        in_channels=768,
        embed_dims=384,
        depth=6,
        num_heads=6,
        mlp_ratio=4.,
        drop_path_rate=0.1,
        hidden_channels=2048,
        pos_grid=(8, 14, 14),
        token_order='position',
        roi_extractor=dict(
            type='ExtendedRoIExtractor3D',
            extend_ratio=(0.4, 0.2),
            featmap_stride=16,
            output_size=7,
            sampling_ratio=2,
            roi_spatial_pool='max',
            roi_temporal_pool='avg'),
        loss_weight=12.))
