"""Tests for ``tools/make_toy_ava.py`` (synthetic AVA-format data set).

A small set (3 videos x 6 s) is generated once per module; mmaction2's own
label-map reader and ``AVADataset`` + standard AVA transforms must read it.
"""
import csv
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import load_tool

SMALL = dict(videos=3, seconds=6)  # fps=10, size=160x128 (defaults)
W, H, FPS, T0 = 160, 128, 10, 900


toy = load_tool('make_toy_ava')


@pytest.fixture(scope='module')
def toy_set(tmp_path_factory):
    out = tmp_path_factory.mktemp('toy_ava')
    return out, toy.make_toy_ava(str(out), seed=0, **SMALL)


def _rows(out, split):
    with open(out / 'annotations' / f'{split}.csv', newline='') as f:
        return list(csv.reader(f))


def _imread(path):
    try:
        import cv2
        return cv2.imread(str(path))[..., ::-1].astype(np.float32)
    except ImportError:
        from PIL import Image
        return np.asarray(Image.open(path), np.float32)


def test_layout_and_csv_schema(toy_set):
    out, summary = toy_set
    ann = out / 'annotations'
    for name in ('train.csv', 'val.csv', 'train_excluded_timestamps.csv',
                 'val_excluded_timestamps.csv', 'action_list.pbtxt'):
        assert (ann / name).is_file(), name
    assert (out / 'meta.json').is_file()
    vids = summary['splits']['train']['videos'] + \
        summary['splits']['val']['videos']
    assert len(vids) == 3 and summary['splits']['val']['videos']
    n_frames = SMALL['seconds'] * FPS + 1
    for vid in vids:
        frames = sorted(p.name for p in (out / 'rawframes' / vid).iterdir())
        assert frames == [f'img_{n:05d}.jpg' for n in range(1, n_frames + 1)]
    assert summary['frames'] == 3 * n_frames
    ids = set(range(1, len(toy.CLASSES) + 1))
    num = re.compile(r'^(0|1)\.\d{3}$')
    for split in ('train', 'val'):
        rows = _rows(out, split)
        assert rows, split
        assert summary['splits'][split]['rows'] == len(rows)
        for row in rows:
            assert len(row) == 8, row
            assert row[0] in summary['splits'][split]['videos']
            assert T0 < int(row[1]) < T0 + SMALL['seconds']
            assert len(row[1]) == 4
            assert all(num.match(v) for v in row[2:6]), row
            x1, y1, x2, y2 = map(float, row[2:6])
            assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1, row
            assert int(row[6]) in ids and int(row[7]) >= 0
        keys = {f'{r[0]},{r[1]}' for r in rows}
        for line in (ann / f'{split}_excluded_timestamps.csv').read_text(
        ).splitlines():  # excluded keyframes are unannotated, as in AVA
            vid, ts = line.split(',')
            assert vid in summary['splits'][split]['videos'] and len(ts) == 4
            assert line not in keys


def test_label_map_and_exclusions_parse_with_mmaction(toy_set):
    ava_utils = pytest.importorskip('mmaction.evaluation.functional.ava_utils')
    out, _ = toy_set
    ann = out / 'annotations'
    with open(ann / 'action_list.pbtxt') as f:
        labelmap, class_ids = ava_utils.read_labelmap(f)
    assert class_ids == set(range(1, len(toy.CLASSES) + 1))
    assert [c['name'] for c in labelmap] == list(toy.CLASSES)
    for split in ('train', 'val'):
        with open(ann / f'{split}.csv') as f:
            boxes, labels, _ = ava_utils.read_csv(f, class_ids)
        assert boxes and all(len(b) == len(lab) for b, lab in zip(
            boxes.values(), labels.values()))
        with open(ann / f'{split}_excluded_timestamps.csv') as f:
            ava_utils.read_exclusions(f)


def test_multilabel_and_empty_keyframes(toy_set):
    out, summary = toy_set
    rows = _rows(out, 'train') + _rows(out, 'val')
    excluded = set()
    for split in ('train', 'val'):
        excluded |= {tuple(line.split(',')) for line in (
            out / 'annotations' / f'{split}_excluded_timestamps.csv'
        ).read_text().splitlines()}
    labels_per_box = defaultdict(set)
    keys = defaultdict(set)
    for row in rows:
        labels_per_box[tuple(row[:6] + row[7:])].add(int(row[6]))
        keys[row[0]].add(int(row[1]))
    motion_ids = {toy.CLASSES.index(m) + 1 for m in toy.MOTIONS}
    for labels in labels_per_box.values():  # exactly one motion class each
        assert len(labels & motion_ids) == 1
    assert any(len(labels) > 1 for labels in labels_per_box.values())
    all_ts = set(range(T0 + 1, T0 + SMALL['seconds']))
    for vid in summary['tracks']:  # each video has a keyframe with no actor
        assert keys[vid] < all_ts
    # an actor (entity) keeps its id across the keyframes it is annotated on
    for vid, actors in summary['tracks'].items():
        for a in actors:
            ts = {int(r[1]) for r in rows
                  if r[0] == vid and int(r[7]) == a['entity_id']}
            assert ts == {t for t in range(T0 + a['k0'], T0 + a['k1'] + 1)
                          if (vid, f'{t:04d}') not in excluded}


def test_overlapping_actors_make_an_excluded_unannotated_keyframe():
    def actor(eid, cx, k1):
        return dict(entity_id=eid, k0=1, k1=k1, t_on=0.1, cx0=cx, cy0=60.,
                    w0=30., h0=50., vx=0., growth=1., labels=['stand_still'])

    rows, excluded = [], []
    stats = dict(keyframes=0, empty_keyframes=0, boxes=0)
    actors = [actor(0, 40., 2), actor(1, 45., 1), actor(2, 120., 1)]
    toy.keyframe_rows('v', actors, 4, W, H, rows, excluded, stats)
    assert excluded == ['v,0901']  # actors 0 and 1 overlap (IoU ~0.7)
    assert [r.split(',')[1] for r in rows] == ['0902']
    assert stats == dict(keyframes=3, empty_keyframes=1, boxes=1)


def test_determinism(toy_set, tmp_path, capsys):
    out, _ = toy_set
    same, other = tmp_path / 'same', tmp_path / 'other'
    toy.main([str(same), '--videos', '3', '--seconds', '6', '--seed', '0'])
    assert 'frames' in capsys.readouterr().out
    toy.make_toy_ava(str(other), seed=1, **SMALL)
    for name in ('train.csv', 'val.csv', 'train_excluded_timestamps.csv',
                 'val_excluded_timestamps.csv', 'action_list.pbtxt'):
        a = (out / 'annotations' / name).read_bytes()
        assert a == (same / 'annotations' / name).read_bytes(), name
    assert (out / 'annotations' / 'train.csv').read_bytes() != \
        (other / 'annotations' / 'train.csv').read_bytes()
    first = Path('rawframes', 'toy_v000', 'img_00001.jpg')
    assert (out / first).read_bytes() == (same / first).read_bytes()
    assert (out / first).read_bytes() != (other / first).read_bytes()


def test_motion_classes_follow_tracks(toy_set):
    _, summary = toy_set
    seen = set()
    for actors in summary['tracks'].values():
        for a in actors:
            k = float(a['k0'])
            before = toy.actor_box(a, k - 0.7)
            after = toy.actor_box(a, k + 0.7)
            dx = (after[0] + after[2] - before[0] - before[2]) / 2
            grow = (after[3] - after[1]) / (before[3] - before[1])
            still, same = abs(dx) < 1e-6, abs(grow - 1) < 1e-9
            expect = {'move_left': (dx < -20, same),
                      'move_right': (dx > 20, same),
                      'grow': (still, grow > 1.25),
                      'shrink': (still, grow < 0.8),
                      'stand_still': (still, same)}[a['motion']]
            assert all(expect), (a['motion'], dx, grow)
            assert a['labels'][0] == a['motion']
            seen.add(a['motion'])
    assert {'move_left', 'move_right'} <= seen


def _shift(a, b):
    """Horizontal shift (px) that best maps patch rows ``a`` onto ``b``."""
    errs = {s: np.mean((a - b[:, 20 + s:20 + s + a.shape[1]])**2)
            for s in range(-20, 21)}
    return min(errs, key=errs.get)


def test_rendered_frames_show_motion(toy_set):
    """Template-match a moving actor's body between frames c and c+2."""
    out, summary = toy_set
    checked = 0
    for vid, actors in summary['tracks'].items():
        for a in actors:
            if a['motion'] not in ('move_left', 'move_right') or a['wave_hz']:
                continue  # (a waving arm bar would disturb the matching)
            for k in range(a['k0'], a['k1'] + 1):
                x1, y1, x2, y2 = toy.actor_box(a, float(k)).round()
                h, w = y2 - y1, x2 - x1  # body interior, below head
                cx1, cx2 = int(x1 + w // 4), int(x2 - w // 4)
                cy1, cy2 = int(max(y1 + 0.3 * h, 0)), int(min(y2 - 3, H))
                others = [toy.actor_box(o, t) for o in actors
                          for t in (k, k + .2)
                          if o is not a and o['t_on'] <= t <= o['t_off']]
                if any(o[2] > cx1 - 10 and o[0] < cx2 + 10 and o[3] > cy1
                       and o[1] < cy2 for o in others) or cx1 < 8 or \
                        cx2 > W - 8 or cy2 - cy1 < 6:
                    continue
                c = FPS * k + 1
                f0 = _imread(out / 'rawframes' / vid / f'img_{c:05d}.jpg')
                f1 = _imread(out / 'rawframes' / vid / f'img_{c + 2:05d}.jpg')
                f1 = np.pad(f1, ((0, 0), (20, 20), (0, 0)), mode='edge')
                shift = _shift(f0[cy1:cy2, cx1:cx2], f1[cy1:cy2, cx1:cx2 + 40])
                expected = a['vx'] * 2 / FPS
                assert abs(shift - expected) <= 2, (vid, k, shift, expected)
                checked += 1
    assert checked > 0


def test_mmaction_ava_dataset_reads_it(toy_set):
    pytest.importorskip('mmaction')
    from mmaction.datasets import AVADataset
    from mmaction.datasets.transforms import (FormatShape, PackActionInputs,
                                              RawFrameDecode, Resize,
                                              SampleAVAFrames)
    out, summary = toy_set
    ann = out / 'annotations'
    num_classes = len(toy.CLASSES) + 1
    pipeline = [
        SampleAVAFrames(clip_len=8, frame_interval=2),
        RawFrameDecode(),
        Resize(scale=(-1, 128)),
        FormatShape('NCTHW', collapse=True),
        PackActionInputs()
    ]
    ds = AVADataset(
        ann_file=str(ann / 'train.csv'),
        exclude_file=str(ann / 'train_excluded_timestamps.csv'),
        label_file=str(ann / 'action_list.pbtxt'),
        pipeline=pipeline, data_prefix=dict(img=str(out / 'rawframes')),
        proposal_file=None, num_classes=num_classes, fps=FPS,
        timestamp_start=summary['timestamp_start'],
        timestamp_end=summary['timestamp_end'])
    rows = _rows(out, 'train')
    excluded = set((ann / 'train_excluded_timestamps.csv').read_text(
    ).splitlines())
    keys = {f'{r[0]},{r[1]}' for r in rows} - excluded
    assert len(ds) == len(keys) > 0
    for idx in (0, len(ds) - 1):
        sample = ds[idx]
        inputs, ds_sample = sample['inputs'], sample['data_samples']
        assert tuple(inputs.shape) == (3, 8, 128, W)
        assert str(inputs.dtype) == 'torch.uint8'
        key = ds_sample.metainfo['img_key']
        assert key in keys
        gt = ds_sample.gt_instances
        want = {}
        for r in rows:
            if f'{r[0]},{r[1]}' == key:
                box = tuple(np.array(r[2:6], float) * [W, H, W, H])
                want.setdefault(box, np.zeros(num_classes))[int(r[6])] = 1
        assert len(gt.bboxes) == len(want)
        for box, label in zip(gt.bboxes.numpy(), gt.labels.numpy()):
            match = [w for b, w in want.items()
                     if np.allclose(b, box, atol=1e-3)]
            assert len(match) == 1
            np.testing.assert_array_equal(label, match[0])
            assert label[0] == 0 and label.sum() >= 1


def test_unannotated_actors_stay_off_screen_near_keyframes(toy_set):
    """An actor is not visible within 0.45 s of a keyframe where it has no
    box: the keyframe tubelet (2 frames, centred one frame after the
    keyframe, jittered by one in training) must not show unlabelled
    actors, or the detector learns to call a person background."""
    _, summary = toy_set
    seconds = summary['seconds']
    for actors in summary['tracks'].values():
        for a in actors:
            assert a['t_on'] == a['k0'] - toy.VISIBLE_MARGIN
            assert a['t_off'] == a['k1'] + toy.VISIBLE_MARGIN
            for k in range(1, seconds):
                if a['k0'] <= k <= a['k1']:
                    continue
                gap = min(abs(a['t_on'] - k), abs(a['t_off'] - k))
                assert gap >= 0.45 - 1e-9, (a['entity_id'], k, gap)
