# EVAD ViT-B/16 (VideoMAE K400) on UCF101-24, split 1: keep rate 0.6,
# 16x4 clips, short side 224 for training and 256 for testing (paper,
# Table 5b and Appendix B; paper: 85.1 frame-mAP@0.5, not measured here).
#
# Data layout (the annotations are made by tools/data/tube_gt_to_ava.py):
#   data/ucf101_24/
#   ├── UCF101v2-GT.pkl                     pickled tube ground truth
#   ├── rgb-images/<video>/00001.jpg, ...   every frame, numbered from 1;
#   │                                       <video> as in the pickle, e.g.
#   │                                       Basketball/v_Basketball_g01_c01
#   └── annotations/                        written by
#       python tools/data/tube_gt_to_ava.py data/ucf101_24/UCF101v2-GT.pkl \
#           data/ucf101_24/annotations
#       ({train,val}.csv, {train,val}_excluded_timestamps.csv,
#        action_list.pbtxt)
#
# Timestamps are frame numbers (fps=1), as in mmaction2's MultiSports
# configs. RawFrameInit gives every video its own frame range, so clips near
# the end of a short video repeat its last frame instead of reading frames
# that do not exist.
#
# AVAMetric's frame-mAP@0.5 ('mAP/overall', all 24 classes) is computed on
# the annotated frames of the test videos only (AVADataset has a sample per
# annotated keyframe); the usual UCF101-24 protocol also counts detections
# on frames without ground truth, so the two are not the same number.
_base_ = ['evad_vitb_ava.py']

data_root = 'data/ucf101_24'
# frame rate of the videos themselves (UCF101 videos are 25 fps); `fps=1`
# below makes timestamps frame numbers, so evad_mm.apis and the demos
# sample clips at this rate
video_fps = 25
ann_root = f'{data_root}/annotations'
label_file = f'{ann_root}/action_list.pbtxt'
num_classes = 24 + 1  # 24 actions + mmaction2's unused column 0

model = dict(
    backbone=dict(keep_rate=0.6),
    action_head=dict(num_classes=num_classes))

dataset_common = dict(
    type='AVADataset',
    label_file=label_file,
    proposal_file=None,
    num_classes=num_classes,
    data_prefix=dict(img=f'{data_root}/rgb-images'),
    filename_tmpl='{:05}.jpg',
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
    dict(type='Resize', scale=(1333, 224), keep_ratio=True),
    dict(type='Flip', flip_ratio=0.5),
    dict(type='FormatShape', input_format='NCTHW', collapse=True),
    dict(type='PackActionInputs')
]
val_pipeline = [
    dict(type='RawFrameInit', first_index=1),
    dict(
        type='SampleAVAFrames', clip_len=16, frame_interval=4, test_mode=True),
    dict(type='RawFrameDecode'),
    dict(type='Resize', scale=(1333, 256), keep_ratio=True),
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
    label_file=label_file,  # all 24 classes are evaluated
    num_classes=num_classes)
test_evaluator = val_evaluator
