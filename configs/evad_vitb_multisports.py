# EVAD ViT-B/16 (VideoMAE K400) on MultiSports: keep rate 0.7, 16x4 clips,
# short side 288, EVAD's 12-epoch AVA recipe. The paper reports no
# MultiSports result; nothing is measured here.
#
# Data as mmaction2's MultiSports configs read it (videos, decoded with
# decord; see mmaction2's tools/data/multisports):
#   data/multisports/
#   ├── trainval/<video>.mp4       <video> as in the pickle, e.g.
#   │                              aerobic_gymnastics/v_<id>_c001
#   └── annotations/
#       ├── multisports_GT.pkl     pickled tube ground truth (66 classes)
#       └── train.csv, val.csv, *_excluded_timestamps.csv,
#           action_list.pbtxt      written by
#   python tools/data/tube_gt_to_ava.py \
#       data/multisports/annotations/multisports_GT.pkl \
#       data/multisports/annotations
# mmaction2's own multisports_{train,val}.csv (tools/data/multisports/
# parse_anno.py) number the actions from 0, which would put the first class
# in the column EVAD leaves unused; the converter numbers them from 1.
#
# Timestamps are frame numbers and frames are decoded from the videos with
# mmaction2's MultiSports settings (fps=1, timestamp_start=1,
# start_index=0, use_frames=False): keyframe t is frame t - 1 of the video,
# counted from 0, and clips are clamped to each video's own frames.
# Evaluation is mmaction2's MultiSports protocol (frame-mAP@0.5 and
# video-mAP, 6 classes left out as mmaction2 does) on the ground-truth
# pickle's test_videos[0] (the validation videos), through
# AVAStyleMultiSportsMetric, which drops EVAD's unused score column 0.
_base_ = ['evad_vitb_ava.py']

data_root = 'data/multisports'
# frame rate of the videos themselves (MultiSports videos are 25 fps); `fps=1`
# in the datasets makes timestamps frame numbers, so evad_mm.apis and the
# demos sample clips at this rate
video_fps = 25
ann_root = f'{data_root}/annotations'
label_file = f'{ann_root}/action_list.pbtxt'
num_classes = 66 + 1  # 66 actions + mmaction2's unused column 0
model = dict(action_head=dict(num_classes=num_classes))

# the AVA pipelines, decoding the videos with decord
decord = dict(RawFrameDecode=dict(type='DecordDecode'))
train_pipeline, val_pipeline = ([
    dict(type='DecordInit'), *(decord.get(t['type'], t) for t in pipeline)
] for pipeline in (_base_.train_pipeline, _base_.val_pipeline))

videos = dict(
    data_prefix=dict(img=f'{data_root}/trainval'),
    fps=1,
    timestamp_start=1,
    start_index=0,
    use_frames=False,
    label_file=label_file,
    num_classes=num_classes)
train_dataloader = dict(
    dataset=dict(
        videos,
        ann_file=f'{ann_root}/train.csv',
        exclude_file=f'{ann_root}/train_excluded_timestamps.csv',
        pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        videos,
        ann_file=f'{ann_root}/val.csv',
        exclude_file=f'{ann_root}/val_excluded_timestamps.csv',
        pipeline=val_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(
    _delete_=True,
    type='AVAStyleMultiSportsMetric',
    ann_file=f'{ann_root}/multisports_GT.pkl')
test_evaluator = val_evaluator
