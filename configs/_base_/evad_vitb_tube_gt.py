# EVAD ViT-B (configs/evad_vitb_ava.py: VideoMAE K400, 16x4 clips, the
# 12-epoch recipe) on a data set of frame folders whose annotations
# tools/data/tube_gt_to_ava.py made from pickled tube ground truth
# (UCF101-24, JHMDB-21):
#   <data_root>/<frames>/<video>/00001.<ext>, ...  every frame, from 1
#   <ann_root>/{train,val}.csv, {train,val}_excluded_timestamps.csv,
#              action_list.pbtxt
# A data set's config sets these paths, the class count and the clip sizes.
#
# Timestamps are frame numbers (fps=1), as in mmaction2's MultiSports
# configs: keyframe t is 0-based index t - 1, which RawFrameInit
# (first_index=1) maps to file t. RawFrameInit gives every video its own
# frame range, so clips near the end of a short video repeat its last frame
# instead of reading frames that do not exist.
_base_ = ['../evad_vitb_ava.py']

model = dict(backbone=dict(keep_rate=0.6))  # the paper's, on both sets
frame_numbered = dict(fps=1, timestamp_start=1, start_index=0)
train_pipeline = [
    dict(type='RawFrameInit', first_index=1), *_base_.train_pipeline
]
val_pipeline = [dict(type='RawFrameInit', first_index=1), *_base_.val_pipeline]
train_dataloader = dict(
    dataset=dict(pipeline=train_pipeline, **frame_numbered))
val_dataloader = dict(dataset=dict(pipeline=val_pipeline, **frame_numbered))
test_dataloader = val_dataloader
