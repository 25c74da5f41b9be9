# The EVAD detector on mmaction2's own VideoMAE VisionTransformer returning a
# plain (B, C, t, h, w) map (no token pruning): the keyframe slice of the one
# map is resampled to strides 4-32 (ViTDet-style simple pyramid) for
# localization, and the whole map feeds context refinement.
_base_ = ['../evad_vitb_ava.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='VisionTransformer',
        img_size=224,
        patch_size=16,
        embed_dims=768,
        depth=12,
        num_heads=12,
        mlp_ratio=4,
        qkv_bias=True,
        num_frames=16,
        norm_cfg=dict(type='LN', eps=1e-6),
        drop_path_rate=0.1,
        use_mean_pooling=False,
        return_feat_map=True,
        init_cfg=dict(
            type='Pretrained', checkpoint={{_base_.pretrained}},
            prefix='backbone.')))
