# The authors' recipe: AdamW (0.9, 0.999), weight decay 1e-4 and none on 1-D
# parameters, heads at 8x the backbone lr, 12 epochs with x0.1 at epochs 5
# and 8, linear warm-up over 2 epochs from lr / 10. No clipping, no AMP.
# lr is for a total batch of 16 (8 GPUs x 2 clips); auto_scale_lr rescales.
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=12, val_begin=1, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

head_lr_mult = 8.
optim_wrapper = dict(
    optimizer=dict(
        type='AdamW', lr=2.5e-5, betas=(0.9, 0.999), weight_decay=1e-4),
    paramwise_cfg=dict(
        flat_decay_mult=0.,
        custom_keys=dict(
            neck=dict(lr_mult=head_lr_mult),
            rpn_head=dict(lr_mult=head_lr_mult),
            roi_head=dict(lr_mult=head_lr_mult),
            action_head=dict(lr_mult=head_lr_mult))))

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.1,
        by_epoch=True,
        begin=0,
        end=2,
        convert_to_iter_based=True),
    dict(
        type='MultiStepLR',
        by_epoch=True,
        begin=0,
        end=12,
        milestones=[5, 8],
        gamma=0.1)
]

auto_scale_lr = dict(enable=False, base_batch_size=16)
