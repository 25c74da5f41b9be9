# EVAD ViT-B/16 (VideoMAE K400) on JHMDB-21, split 1: keep rate 0.6, 16x4
# clips, short side drawn from 256-320 for training (paper, Table 5b and
# Appendix B; paper: 90.2 frame-mAP@0.5 averaged over the 3 splits, not
# measured here). The paper gives no test size: 288, the middle of the
# training range, is this config's choice.
#
# Data layout (the annotations are made by tools/data/tube_gt_to_ava.py):
#   data/jhmdb/
#   ├── JHMDB-GT.pkl                        pickled tube ground truth
#   ├── rgb-images/<video>/00001.png, ...   every frame, numbered from 1;
#   │                                       <video> as in the pickle, e.g.
#   │                                       brush_hair/<clip name>; set
#   │                                       filename_tmpl for other names
#   └── annotations/split1/                 written by
#       python tools/data/tube_gt_to_ava.py data/jhmdb/JHMDB-GT.pkl \
#           data/jhmdb/annotations/split1 --split 1
#       ({train,val}.csv, {train,val}_excluded_timestamps.csv,
#        action_list.pbtxt)
# Splits 2 and 3: convert with --split 2 / 3 into annotations/split2 / 3
# and point the dataset and evaluator files there (README, "Other data
# sets").
#
# Timestamps are frame numbers (fps=1), as in mmaction2's MultiSports
# configs. JHMDB clips are shorter than a 16x4 clip's 64-frame span:
# RawFrameInit gives every video its own frame range, so the sampled
# indices are clamped to the video's own frames (edge frames repeat).
# AVAMetric's 'mAP/overall' is frame-mAP@0.5 over all 21 classes, on the
# annotated frames of the test videos.
_base_ = ['evad_vitb_ava.py']

data_root = 'data/jhmdb'
# frame rate of the videos themselves (JHMDB videos are 30 fps); `fps=1`
# below makes timestamps frame numbers, so evad_mm.apis and the demos
# sample clips at this rate
video_fps = 30
ann_root = f'{data_root}/annotations/split1'
label_file = f'{ann_root}/action_list.pbtxt'
num_classes = 21 + 1  # 21 actions + mmaction2's unused column 0

model = dict(
    backbone=dict(keep_rate=0.6),
    action_head=dict(num_classes=num_classes))

dataset_common = dict(
    type='AVADataset',
    label_file=label_file,
    proposal_file=None,
    num_classes=num_classes,
    data_prefix=dict(img=f'{data_root}/rgb-images'),
    filename_tmpl='{:05}.png',
    # timestamp = frame number: keyframe t is 0-based index t - 1, which
    # RawFrameInit (first_index=1) maps to file t
    fps=1,
    timestamp_start=1,
    start_index=0,
    # only for tools/data/check_ava_dataset.py: RawFrameInit sets each
    # video's range, AVADataset's shared one is not used
    timestamp_end=100000)

train_pipeline = [
    dict(type='RawFrameInit', first_index=1),
    dict(type='SampleAVAFrames', clip_len=16, frame_interval=4),
    dict(type='RawFrameDecode'),
    dict(type='RandomRescale', scale_range=(256, 320)),
    dict(type='Flip', flip_ratio=0.5),
    dict(type='FormatShape', input_format='NCTHW', collapse=True),
    dict(type='PackActionInputs')
]
val_pipeline = [
    dict(type='RawFrameInit', first_index=1),
    dict(
        type='SampleAVAFrames', clip_len=16, frame_interval=4, test_mode=True),
    dict(type='RawFrameDecode'),
    dict(type='Resize', scale=(1333, 288), keep_ratio=True),
    dict(type='FormatShape', input_format='NCTHW', collapse=True),
    dict(type='PackActionInputs')
]

train_dataloader = dict(
    dataset=dict(
        ann_file=f'{ann_root}/train.csv',
        exclude_file=f'{ann_root}/train_excluded_timestamps.csv',
        pipeline=train_pipeline,
        **dataset_common))
val_dataloader = dict(
    dataset=dict(
        ann_file=f'{ann_root}/val.csv',
        exclude_file=f'{ann_root}/val_excluded_timestamps.csv',
        pipeline=val_pipeline,
        test_mode=True,
        **dataset_common))
test_dataloader = val_dataloader

val_evaluator = dict(
    type='AVAMetric',
    ann_file=f'{ann_root}/val.csv',
    exclude_file=f'{ann_root}/val_excluded_timestamps.csv',
    label_file=label_file,  # all 21 classes are evaluated
    num_classes=num_classes)
test_evaluator = val_evaluator
