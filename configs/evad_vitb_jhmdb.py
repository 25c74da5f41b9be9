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
# JHMDB clips are shorter than a 16x4 clip's 64-frame span: the sampled
# indices are clamped to each video's own frames (edge frames repeat).
# AVAMetric's 'mAP/overall' is frame-mAP@0.5 over all 21 classes, on the
# annotated frames of the test videos.
_base_ = ['_base_/evad_vitb_tube_gt.py']

data_root = 'data/jhmdb'
# frame rate of the videos themselves (JHMDB videos are 30 fps); `fps=1`
# in the datasets makes timestamps frame numbers, so evad_mm.apis and the
# demos sample clips at this rate
video_fps = 30
ann_root = f'{data_root}/annotations/split1'
num_classes = 21 + 1  # 21 actions + mmaction2's unused column 0
model = dict(action_head=dict(num_classes=num_classes))

# a random short side in 256-320 for training; tested at the base's 288
train_pipeline = [
    dict(type='RandomRescale', scale_range=(256, 320))
    if t['type'] == 'Resize' else t for t in _base_.train_pipeline
]

label_file = f'{ann_root}/action_list.pbtxt'
frames = dict(
    data_prefix=dict(img=f'{data_root}/rgb-images'),
    filename_tmpl='{:05}.png',
    label_file=label_file,
    num_classes=num_classes)
val_evaluator = dict(  # AVAMetric, all 21 classes
    ann_file=f'{ann_root}/val.csv',
    exclude_file=f'{ann_root}/val_excluded_timestamps.csv',
    label_file=label_file,
    num_classes=num_classes)
test_evaluator = val_evaluator
val_dataloader = dict(dataset=dict(frames, **val_evaluator))
test_dataloader = val_dataloader
train_dataloader = dict(
    dataset=dict(
        frames,
        ann_file=f'{ann_root}/train.csv',
        exclude_file=f'{ann_root}/train_excluded_timestamps.csv',
        pipeline=train_pipeline))
