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
# AVAMetric's frame-mAP@0.5 ('mAP/overall', all 24 classes) is computed on
# the annotated frames of the test videos only (AVADataset has a sample per
# annotated keyframe); the usual UCF101-24 protocol also counts detections
# on frames without ground truth, so the two are not the same number.
_base_ = ['_base_/evad_vitb_tube_gt.py']

data_root = 'data/ucf101_24'
# frame rate of the videos themselves (UCF101 videos are 25 fps); `fps=1`
# in the datasets makes timestamps frame numbers, so evad_mm.apis and the
# demos sample clips at this rate
video_fps = 25
ann_root = f'{data_root}/annotations'
num_classes = 24 + 1  # 24 actions + mmaction2's unused column 0
model = dict(action_head=dict(num_classes=num_classes))

# short side 224 for training, 256 for testing
train_pipeline, val_pipeline = (
    [dict(t, scale=(1333, side)) if t['type'] == 'Resize' else t
     for t in pipeline]
    for pipeline, side in ((_base_.train_pipeline, 224),
                           (_base_.val_pipeline, 256)))

label_file = f'{ann_root}/action_list.pbtxt'
frames = dict(
    data_prefix=dict(img=f'{data_root}/rgb-images'),
    filename_tmpl='{:05}.jpg',
    label_file=label_file,
    num_classes=num_classes)
val_evaluator = dict(  # AVAMetric, all 24 classes
    ann_file=f'{ann_root}/val.csv',
    exclude_file=f'{ann_root}/val_excluded_timestamps.csv',
    label_file=label_file,
    num_classes=num_classes)
test_evaluator = val_evaluator
val_dataloader = dict(
    dataset=dict(frames, pipeline=val_pipeline, **val_evaluator))
test_dataloader = val_dataloader
train_dataloader = dict(
    dataset=dict(
        frames,
        ann_file=f'{ann_root}/train.csv',
        exclude_file=f'{ann_root}/train_excluded_timestamps.csv',
        pipeline=train_pipeline))
