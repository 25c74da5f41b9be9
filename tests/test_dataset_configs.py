"""The UCF101-24, JHMDB-21 and MultiSports configs.

Class counts agree between model, datasets and metric; the models build;
and data made by ``tools/data/tube_gt_to_ava.py`` from a tiny stand-in of
each set's pickled ground truth (with 64x48 frames or videos whose grey
level encodes the frame number) goes through the configs' own datasets and
pipelines (mmaction2's ``AVADataset``, ``SampleAVAFrames``, ...) and
metrics: the keyframe is the annotated frame, boxes come out in pixels,
labels multi-hot at label index + 1, and the ground truth scored as
predictions gives a perfect mAP.
"""
import os.path as osp
import pickle
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config

from tests.conftest import REPO, load_tool, write_mp4

CONFIGS = dict(
    ucf101_24=osp.join(REPO, 'configs', 'evad_vitb_ucf101_24.py'),
    jhmdb=osp.join(REPO, 'configs', 'evad_vitb_jhmdb.py'),
    multisports=osp.join(REPO, 'configs', 'evad_vitb_multisports.py'))
NUM_LABELS = dict(ucf101_24=24, jhmdb=21, multisports=66)
W, H = 64, 48
GREY_STEP = 10  # frame t is filled with grey level GREY_STEP * t


def _converter():
    return load_tool('data', 'tube_gt_to_ava')


def _tube(first, last, box, dx=1.):
    frames = np.arange(first, last + 1, dtype=np.float32)
    boxes = np.array(box, np.float32) + (frames - first)[:, None] * np.array(
        [dx, 0, dx, 0], np.float32)
    return np.concatenate([frames[:, None], boxes], axis=1)


def tiny_gt(name):
    """Two training videos (one with two actors), one test video with two
    actors of different classes; the set's real class count."""
    folder = dict(
        ucf101_24='Basketball/v_Basketball_g0{}_c01',
        jhmdb='brush_hair/clip_{}',
        multisports='aerobic_gymnastics/v_clip{}_c001')[name]
    a, b, c = (folder.format(i) for i in (1, 2, 3))
    nframes = {a: 12, b: 20, c: 18}
    return dict(
        labels=[f'{name} action {i}' for i in range(NUM_LABELS[name])],
        gttubes={
            a: {0: [_tube(1, 12, (4, 6, 30, 40))]},
            b: {5: [_tube(2, 18, (2, 2, 20, 30)),
                    _tube(4, 20, (30, 10, 50, 46), dx=0.5)]},
            c: {3: [_tube(1, 18, (10, 5, 30, 45))],
                1: [_tube(1, 17, (36, 4, 48, 40))]},
        },
        nframes=nframes,
        resolution={v: (H, W) for v in nframes},
        train_videos=[[a, b]],
        test_videos=[[c]])


def _grey(t):
    return np.full((H, W, 3), GREY_STEP * t, np.uint8)


def write_frames(root, gt, ext):
    for video, n in gt['nframes'].items():
        folder = root / video
        folder.mkdir(parents=True)
        for t in range(1, n + 1):
            cv2.imwrite(str(folder / f'{t:05d}.{ext}'), _grey(t))


def write_videos(root, gt):
    for video, n in gt['nframes'].items():
        path = root / f'{video}.mp4'
        path.parent.mkdir(parents=True, exist_ok=True)
        write_mp4(path, np.stack([_grey(t) for t in range(1, n + 1)]), 25)


@pytest.fixture(scope='module', params=sorted(CONFIGS))
def converted(request, tmp_path_factory):
    """(name, config, root, gt, converter summary) of a converted set."""
    name = request.param
    cfg = Config.fromfile(CONFIGS[name])
    root = tmp_path_factory.mktemp(name)
    gt = tiny_gt(name)
    with open(root / 'GT.pkl', 'wb') as f:
        pickle.dump(gt, f)
    media = root / 'media'
    if name == 'multisports':
        write_videos(media, gt)
    else:
        ext = cfg.train_dataloader.dataset.filename_tmpl.rsplit('.', 1)[1]
        write_frames(media, gt, ext)
    summary = _converter().convert(str(root / 'GT.pkl'),
                                   str(root / 'annotations'))
    return name, cfg, root, gt, summary


def _files(root, split):
    ann = root / 'annotations'
    return dict(
        ann_file=str(ann / f'{split}.csv'),
        exclude_file=str(ann / f'{split}_excluded_timestamps.csv'),
        label_file=str(ann / 'action_list.pbtxt'))


def build_dataset(converted, split='val'):
    """The config's dataset of ``split``, reading the tmp files."""
    from mmaction.registry import DATASETS
    _, cfg, root, _, _ = converted
    loader = cfg.train_dataloader if split == 'train' else cfg.val_dataloader
    dataset = dict(loader.dataset.to_dict(), **_files(root, split))
    dataset['data_prefix'] = dict(img=str(root / 'media'))
    return DATASETS.build(dataset)


def build_metric(converted):
    from mmaction.registry import METRICS
    name, cfg, root, _, _ = converted
    metric = cfg.val_evaluator.to_dict()
    if name == 'multisports':
        metric.update(ann_file=str(root / 'GT.pkl'), verbose=False)
    else:
        metric.update(_files(root, 'val'))
    return METRICS.build(metric)


# ---------------------------------------------------------------------------
# config values
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('name,video_fps', [('ucf101_24', 25), ('jhmdb', 30),
                                            ('multisports', 25)])
def test_inference_uses_the_videos_frame_rate(name, video_fps):
    """The datasets' ``fps=1`` makes timestamps frame numbers; the demos
    must sample clips at the videos' real frame rate instead."""
    from evad_mm.apis.pipeline import training_fps
    cfg = Config.fromfile(CONFIGS[name])
    assert cfg.test_dataloader.dataset.fps == 1
    assert training_fps(cfg) == video_fps
    cfg.video_fps = 0
    with pytest.raises(ValueError, match='video_fps=0'):
        training_fps(cfg)


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_class_counts_agree(name):
    cfg = Config.fromfile(CONFIGS[name])
    num_classes = NUM_LABELS[name] + 1
    assert cfg.num_classes == num_classes
    assert cfg.model.action_head.num_classes == num_classes
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = cfg[loader].dataset
        assert dataset.type == 'AVADataset'
        assert dataset.num_classes == num_classes
        assert dataset.get('custom_classes') is None  # every class
        assert (dataset.fps, dataset.timestamp_start,
                dataset.start_index) == (1, 1, 0)
        assert dataset.ann_file.startswith(f'data/{name}/annotations/')
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        if name == 'multisports':
            assert evaluator.type == 'AVAStyleMultiSportsMetric'
            assert set(evaluator) == {'type', 'ann_file'}
        else:
            assert evaluator.type == 'AVAMetric'
            assert evaluator.num_classes == num_classes
            assert evaluator.get('custom_classes') is None
            assert evaluator.label_file == (
                cfg.val_dataloader.dataset.label_file)
            assert evaluator.ann_file == cfg.val_dataloader.dataset.ann_file


@pytest.mark.parametrize('name, keep_rate, train_step, test_step', [
    ('ucf101_24', 0.6, dict(type='Resize', scale=(1333, 224),
                            keep_ratio=True),
     dict(type='Resize', scale=(1333, 256), keep_ratio=True)),
    ('jhmdb', 0.6, dict(type='RandomRescale', scale_range=(256, 320)),
     dict(type='Resize', scale=(1333, 288), keep_ratio=True)),
    ('multisports', 0.7, dict(type='Resize', scale=(1333, 288),
                              keep_ratio=True),
     dict(type='Resize', scale=(1333, 288), keep_ratio=True)),
])
def test_clip_recipe(name, keep_rate, train_step, test_step):
    """Paper (Table 5b, Appendix B): 16x4 clips, keep rate 0.6 on UCF101-24
    and JHMDB, short side 224 / 256 (UCF) and 256-320 (JHMDB)."""
    cfg = Config.fromfile(CONFIGS[name])
    assert cfg.model.backbone.keep_rate == keep_rate
    first = 'DecordInit' if name == 'multisports' else 'RawFrameInit'
    for loader, step in (('train_dataloader', train_step),
                         ('val_dataloader', test_step)):
        pipeline = cfg[loader].dataset.pipeline
        assert pipeline[0].type == first
        sampler = pipeline[1]
        assert sampler.type == 'SampleAVAFrames'
        assert (sampler.clip_len, sampler.frame_interval) == (16, 4)
        assert sampler.get('test_mode', False) == (loader == 'val_dataloader')
        assert pipeline[3] == step
    assert cfg.train_cfg.max_epochs == 12


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_model_builds_with_the_class_count(name):
    from mmaction.registry import MODELS
    cfg = Config.fromfile(CONFIGS[name])
    cfg.model.backbone.init_cfg = None  # no download
    model = MODELS.build(cfg.model)
    head = model.action_head
    assert head.num_classes == NUM_LABELS[name] + 1
    assert head.classifiers[-1][3].out_features == NUM_LABELS[name]


# ---------------------------------------------------------------------------
# converted data through the configs' datasets and metrics
# ---------------------------------------------------------------------------
def test_converter_class_count_matches_config(converted):
    name, cfg, _, _, summary = converted
    assert summary['num_classes'] == cfg.model.action_head.num_classes


def _keyframe_grey(inputs):
    """Mean grey level of the middle frame of a (3, T, H, W) clip."""
    return inputs[:, inputs.shape[1] // 2].float().mean().item()


def test_val_sample_is_the_annotated_frame(converted):
    name, _, _, gt, _ = converted
    dataset = build_dataset(converted, 'val')
    video = gt['test_videos'][0][0]
    assert len(dataset) == 18  # frames 1..18 of the test video
    infos = [dataset.get_data_info(i) for i in range(len(dataset))]
    for t in (1, 9, 18):  # first, middle and last annotated frame
        index = next(i for i, d in enumerate(infos) if d['timestamp'] == t)
        packed = dataset[index]
        inputs, sample = packed['inputs'], packed['data_samples']
        assert inputs.dtype == torch.uint8 and inputs.shape[:2] == (3, 16)
        assert sample.metainfo['video_id'] == video
        assert sample.metainfo['timestamp'] == t
        assert _keyframe_grey(inputs) == pytest.approx(GREY_STEP * t, abs=3)
        # boxes in pixels of the resized clip, labels at label index + 1
        h, w = sample.metainfo['img_shape']
        assert (h, w) == tuple(inputs.shape[2:])
        scale = np.array([w / W, h / H, w / W, h / H])
        expected = {}
        for label, tubes in gt['gttubes'][video].items():
            for tube in tubes:
                row = tube[tube[:, 0] == t]
                if len(row):
                    expected[label] = row[0, 1:] * scale
        boxes = sample.gt_instances.bboxes.numpy()
        labels = sample.gt_instances.labels.numpy()
        assert len(boxes) == len(expected)
        assert labels.shape == (len(boxes), NUM_LABELS[name] + 1)
        for box, multi_hot in zip(boxes, labels):
            (hot, ) = np.flatnonzero(multi_hot)
            assert hot >= 1
            np.testing.assert_allclose(box, expected[hot - 1], atol=0.05)


def test_train_samples_stay_inside_each_video(converted):
    """A 16x4 clip (64 frames) around the last frame of a 12-frame video
    only reads that video's frames (RawFrameInit / DecordInit)."""
    _, _, _, gt, _ = converted
    dataset = build_dataset(converted, 'train')
    short = gt['train_videos'][0][0]
    infos = [dataset.get_data_info(i) for i in range(len(dataset))]
    index = next(i for i, d in enumerate(infos)
                 if d['video_id'] == short and d['timestamp'] == 12)
    packed = dataset[index]
    greys = packed['inputs'].float().mean(dim=(0, 2, 3))
    assert greys.max().item() == pytest.approx(GREY_STEP * 12, abs=3)
    assert greys.min().item() >= GREY_STEP * 1 - 3
    assert len(packed['data_samples'].gt_instances.bboxes) == 1


class _SerialPool:
    """Stands in for the 32-process pool of mmaction2's ava_eval."""

    def __init__(self, *args, **kwargs):
        pass

    def map(self, func, items):
        return list(map(func, items))


def test_ground_truth_as_predictions_scores_perfectly(converted, tmp_path,
                                                      monkeypatch):
    from mmaction.evaluation.functional import ava_utils
    from mmaction.structures import ActionDataSample
    from mmengine.evaluator import Evaluator
    from mmengine.structures import InstanceData
    name = converted[0]
    monkeypatch.chdir(tmp_path)  # AVAMetric writes a csv to the cwd
    monkeypatch.setattr(ava_utils, 'multiprocessing',
                        SimpleNamespace(Pool=_SerialPool))
    dataset = build_dataset(converted, 'val')
    samples = []
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)  # normalised boxes, multi-hot
        sample = ActionDataSample(metainfo=dict(
            video_id=info['video_id'], timestamp=info['timestamp'],
            img_shape=(H, W)))
        sample.pred_instances = InstanceData(
            bboxes=torch.from_numpy(info['gt_bboxes']).float(),
            scores=torch.from_numpy(info['gt_labels']).float())
        samples.append(sample)
    evaluator = Evaluator([build_metric(converted)])
    evaluator.process(samples)
    result = evaluator.evaluate(len(samples))
    if name == 'multisports':
        assert result['mAP/frameAP'] == pytest.approx(100.0)
        assert result['mAP/v_map@0.5'] == pytest.approx(100.0)
    else:
        assert result['mAP/overall'] == pytest.approx(1.0)


# ---------------------------------------------------------------------------
# RawFrameInit and AVAStyleMultiSportsMetric on their own
# ---------------------------------------------------------------------------
def _raw_results(frame_dir, timestamp, start_index=0):
    return dict(frame_dir=str(frame_dir), filename_tmpl='{:05}.jpg',
                timestamp=timestamp, timestamp_start=1, fps=1,
                start_index=start_index, video_id='v')


def test_raw_frame_init_counts_and_checks(tmp_path):
    from mmaction.registry import TRANSFORMS
    folder = tmp_path / 'v'
    folder.mkdir()
    for t in (1, 2, 3, 5):  # a gap after 3: frames 1..3 count
        cv2.imwrite(str(folder / f'{t:05d}.jpg'), _grey(t))
    init = TRANSFORMS.build(dict(type='RawFrameInit'))
    out = init(_raw_results(folder, 3))
    assert (out['total_frames'], out['offset']) == (3, 1)
    with pytest.raises(FileNotFoundError, match=r'keyframe 4 of v is frame '
                       r'file 00004\.jpg, but .* has 3 frames'):
        init(_raw_results(folder, 4))
    with pytest.raises(ValueError, match=r'start_index=0'):
        init(_raw_results(folder, 2, start_index=1))
    with pytest.raises(FileNotFoundError, match=r'no frame 00000\.jpg'):
        TRANSFORMS.build(dict(type='RawFrameInit', first_index=0))(
            _raw_results(folder, 1))
    with pytest.raises(FileNotFoundError, match=r'cannot list'):
        init(_raw_results(tmp_path / 'missing', 1))


def test_multisports_metric_rejects_wrong_class_count(tmp_path):
    from mmaction.registry import METRICS
    gt = tiny_gt('multisports')
    with open(tmp_path / 'GT.pkl', 'wb') as f:
        pickle.dump(gt, f)
    metric = METRICS.build(
        dict(type='AVAStyleMultiSportsMetric', ann_file=str(tmp_path /
                                                            'GT.pkl')))
    sample = dict(
        video_id=gt['test_videos'][0][0], timestamp=1,
        pred_instances=dict(bboxes=torch.zeros(1, 4),
                            scores=torch.zeros(1, 66)))
    with pytest.raises(ValueError, match=r'expected \(n, 67\).*num_classes '
                       r'to 67'):
        metric.process(None, [sample])


def test_dataset_checker_follows_raw_frame_init(converted, capsys):
    """With ``RawFrameInit`` every video has its own frame range: the
    checker must not report the frames past a short video's end as missing,
    but must report a frame a clip really reads."""
    name, _, root, gt, _ = converted
    if name == 'multisports':
        pytest.skip('read from video files, no frame folders to check')
    checker = load_tool('data', 'check_ava_dataset')
    files = _files(root, 'val')
    argv = [CONFIGS[name], '--split', 'val', '--ann-file', files['ann_file'],
            '--exclude-file', files['exclude_file'], '--label-file',
            files['label_file'], '--frame-dir', str(root / 'media')]
    assert checker.main(argv) == 0, capsys.readouterr().out
    video = gt['test_videos'][0][0]
    frame = next((root / 'media' / video).glob('00009.*'))
    saved = frame.read_bytes()
    frame.unlink()
    try:
        assert checker.main(argv) == 1
        assert frame.name in capsys.readouterr().out
    finally:
        frame.write_bytes(saved)
