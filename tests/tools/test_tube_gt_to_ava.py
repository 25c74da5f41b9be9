"""Tests for ``tools/data/tube_gt_to_ava.py`` on a tiny stand-in of the
pickled tube ground truth of UCF101-24 / JHMDB-21 / MultiSports.

Loading the converted files through mmaction2's ``AVADataset`` and
``AVAMetric`` with the configs is tested in ``tests/test_dataset_configs.py``.
"""
import copy
import csv
import os
import pickle

import numpy as np
import pytest

from tests.conftest import load_tool

W, H = 64, 48
LABELS = ['Basketball', 'Diving', 'Fencing']


conv = load_tool('data', 'tube_gt_to_ava')


def _tube(first, last, box, step=(0., 0.)):
    """(N, 5) rows frame, x1, y1, x2, y2 for frames first..last."""
    frames = np.arange(first, last + 1, dtype=np.float32)
    shift = (frames - first)[:, None] * np.array([*step, *step], np.float32)
    return np.concatenate([frames[:, None], np.array(box, np.float32) + shift],
                          axis=1)


def tiny_gt():
    """Two training videos (one with two actors), one test video with two
    classes; 2 splits, the second swapping the roles."""
    a = 'Basketball/v_Basketball_g01_c01'
    b = 'Diving/v_Diving_g02_c03'
    c = 'Fencing/v_Fencing_g05_c01'
    return dict(
        labels=list(LABELS),
        gttubes={
            a: {0: [_tube(1, 10, (4, 6, 30, 40), step=(1, 0))]},
            b: {1: [_tube(2, 8, (2, 2, 20, 30)),
                    _tube(4, 12, (30, 10, 60, 46))]},
            c: {2: [_tube(1, 9, (10, 5, 50, 45))],
                0: [_tube(3, 6, (0, 0, 16, 16))]},
        },
        nframes={a: 10, b: 12, c: 9},
        resolution={a: (H, W), b: (H, W), c: (H, W)},
        train_videos=[[a, b], [c]],
        test_videos=[[c], [a, b]])


def _write_pkl(path, gt, protocol=pickle.HIGHEST_PROTOCOL):
    with open(path, 'wb') as f:
        pickle.dump(gt, f, protocol=protocol)
    return str(path)


def _rows(path):
    with open(path) as f:
        return list(csv.reader(f))


@pytest.fixture
def gt_pkl(tmp_path):
    return _write_pkl(tmp_path / 'GT.pkl', tiny_gt())


def test_writes_ava_files(gt_pkl, tmp_path):
    out = tmp_path / 'ann'
    summary = conv.convert(gt_pkl, str(out))
    assert sorted(os.listdir(out)) == [
        'action_list.pbtxt', 'train.csv', 'train_excluded_timestamps.csv',
        'val.csv', 'val_excluded_timestamps.csv'
    ]
    for name in ('train', 'val'):
        assert (out / f'{name}_excluded_timestamps.csv').read_text() == ''
    train, val = _rows(out / 'train.csv'), _rows(out / 'val.csv')
    assert len(train) == 10 + 7 + 9 and len(val) == 9 + 4
    assert all(len(r) == 8 for r in train + val)
    # timestamps are the frame numbers; boxes normalised; ids from 1
    first = train[0]
    assert first == [
        'Basketball/v_Basketball_g01_c01', '1', f'{4 / W:.4f}',
        f'{6 / H:.4f}', f'{30 / W:.4f}', f'{40 / H:.4f}', '1', '0'
    ]
    tenth = [r for r in train if r[0].startswith('Basket') and r[1] == '10']
    assert float(tenth[0][2]) == pytest.approx((4 + 9) / W, abs=1e-4)
    diving = [r for r in train if r[0].startswith('Diving')]
    assert {r[6] for r in diving} == {'2'}
    assert {(r[1], r[7]) for r in diving if r[1] in ('4', '8')} == {
        ('4', '0'), ('4', '1'), ('8', '0'), ('8', '1')}
    assert {r[6] for r in val} == {'1', '3'}
    assert summary['num_classes'] == 4
    assert summary['train'] == dict(videos=2, keyframes=10 + 11, rows=26,
                                    classes=2)
    assert summary['val'] == dict(videos=1, keyframes=9, rows=13, classes=2)
    assert summary['max_nframes'] == 12


def test_label_map_reads_as_mmaction2_reads_it(gt_pkl, tmp_path):
    from mmaction.evaluation import read_labelmap
    conv.convert(gt_pkl, str(tmp_path / 'ann'))
    text = (tmp_path / 'ann' / 'action_list.pbtxt').read_text()
    assert text.startswith('item {\n  name: "Basketball"\n  id: 1\n}\n')
    with open(tmp_path / 'ann' / 'action_list.pbtxt') as f:
        labelmap, ids = read_labelmap(f)
    assert ids == {1, 2, 3}
    assert [x['name'] for x in labelmap] == LABELS


def test_split_selects_videos(gt_pkl, tmp_path):
    summary = conv.convert(gt_pkl, str(tmp_path / 'ann'), split=2)
    assert summary['train']['videos'] == 1
    assert {r[0] for r in _rows(tmp_path / 'ann' / 'val.csv')} == {
        'Basketball/v_Basketball_g01_c01', 'Diving/v_Diving_g02_c03'}
    with pytest.raises(conv.GroundTruthError, match=r'--split 3 .* 2 split'):
        conv.convert(gt_pkl, str(tmp_path / 'x'), split=3)


def test_every_keeps_one_frame_grid_per_video(gt_pkl, tmp_path):
    conv.convert(gt_pkl, str(tmp_path / 'ann'), every=3)
    train = _rows(tmp_path / 'ann' / 'train.csv')
    frames = {}
    for r in train:
        frames.setdefault(r[0], []).append(int(r[1]))
    assert frames['Basketball/v_Basketball_g01_c01'] == [1, 4, 7, 10]
    # both actors of a kept frame stay: frames 4, 7 have two rows
    assert frames['Diving/v_Diving_g02_c03'] == [4, 4, 7, 7, 10]
    assert len(_rows(tmp_path / 'ann' / 'val.csv')) == 13  # val-every 1
    conv.convert(gt_pkl, str(tmp_path / 'ann2'), val_every=4)
    assert sorted({int(r[1]) for r in _rows(tmp_path / 'ann2' / 'val.csv')
                   }) == [1, 5, 9]


def test_flat_split_lists_and_protocol_2(tmp_path):
    gt = tiny_gt()
    gt['train_videos'], gt['test_videos'] = gt['train_videos'][0], gt[
        'test_videos'][0]
    path = _write_pkl(tmp_path / 'GT.pkl', gt, protocol=2)
    assert conv.convert(path, str(tmp_path / 'ann'))['val']['videos'] == 1


@pytest.mark.parametrize('edit, message', [
    (lambda gt: gt.pop('resolution'), r'lacks resolution'),
    (lambda gt: gt.update(labels=['a "b"', 'c', 'd']), r'double quote'),
    (lambda gt: gt.update(test_videos=[[], []], train_videos=[[]]),
     r'same splits'),
    (lambda gt: gt['nframes'].update({'Basketball/v_Basketball_g01_c01': 5}),
     r'frame 6 .*not an integer in 1\.\.5'),
    (lambda gt: gt['gttubes']['Diving/v_Diving_g02_c03'].update(
        {7: [_tube(1, 2, (1, 1, 5, 5))]}), r'label index 7 is not in 0\.\.2'),
    (lambda gt: gt['gttubes']['Diving/v_Diving_g02_c03'][1].append(
        np.zeros((3, 4))), r'shape \(3, 4\), expected \(N, 5\)'),
    (lambda gt: gt['gttubes']['Diving/v_Diving_g02_c03'][1].append(
        _tube(1, 1, (9, 9, 9, 20))), r'is empty'),
    (lambda gt: gt['train_videos'][0].append('Golf/v_new'),
     r'Golf/v_new: listed in a split but missing from nframes and '
     r'resolution'),
    (lambda gt: gt['train_videos'][0].append('a,b'), r'contains a comma'),
    (lambda gt: gt['train_videos'][0].append('/abs/video'),
     r'absolute or climbs'),
    (lambda gt: gt['test_videos'][0].append(
        'Basketball/v_Basketball_g01_c01'), r'both train and test'),
])
def test_bad_ground_truth_is_reported(tmp_path, edit, message):
    gt = copy.deepcopy(tiny_gt())
    edit(gt)
    path = _write_pkl(tmp_path / 'GT.pkl', gt)
    with pytest.raises(conv.GroundTruthError, match=message):
        conv.convert(path, str(tmp_path / 'ann'))
    assert not (tmp_path / 'ann').exists()  # nothing written


def test_boxes_outside_the_frame_fail_or_are_clipped(tmp_path):
    gt = tiny_gt()
    tube = gt['gttubes']['Fencing/v_Fencing_g05_c01'][2][0]
    tube[0, 3] = W + 3  # x2 past the right border at frame 1
    tube[1, 1] = -2  # x1 left of the frame at frame 2
    path = _write_pkl(tmp_path / 'GT.pkl', gt)
    with pytest.raises(conv.GroundTruthError) as err:
        conv.convert(path, str(tmp_path / 'ann'))
    text = str(err.value)
    assert 'boxes outside the frame (2)' in text
    assert 'Fencing/v_Fencing_g05_c01 frame 1' in text
    assert '--clip-boxes' in text
    summary = conv.convert(path, str(tmp_path / 'ann'), clip_boxes=True)
    assert summary['boxes clipped'] == 2
    val = _rows(tmp_path / 'ann' / 'val.csv')
    f1 = [r for r in val if r[1] == '1' and r[6] == '3'][0]
    f2 = [r for r in val if r[1] == '2' and r[6] == '3'][0]
    assert float(f1[4]) == 1.0 and float(f2[2]) == 0.0


def test_problems_are_capped_per_kind(tmp_path):
    gt = tiny_gt()
    gt['nframes']['Basketball/v_Basketball_g01_c01'] = 1  # 9 frames outside
    path = _write_pkl(tmp_path / 'GT.pkl', gt)
    with pytest.raises(conv.GroundTruthError) as err:
        conv.convert(path, str(tmp_path / 'ann'), max_shown=3)
    assert 'frames outside the video (9)' in str(err.value)
    assert '... and 6 more' in str(err.value)


def test_unsafe_pickle_is_refused(tmp_path):

    class Evil:

        def __reduce__(self):
            return (os.system, ('echo pwned > pwned.txt', ))

    path = tmp_path / 'GT.pkl'
    path.write_bytes(pickle.dumps(dict(labels=Evil())))
    with pytest.raises(conv.GroundTruthError, match=r'refusing to load'):
        conv.load_ground_truth(str(path))
    assert not (tmp_path / 'pwned.txt').exists()


def test_not_a_dict_or_not_a_pickle(tmp_path):
    (tmp_path / 'list.pkl').write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(conv.GroundTruthError, match=r'holds a list'):
        conv.load_ground_truth(str(tmp_path / 'list.pkl'))
    (tmp_path / 'text.pkl').write_text('labels: a, b\n')
    with pytest.raises(conv.GroundTruthError, match=r'not a readable'):
        conv.load_ground_truth(str(tmp_path / 'text.pkl'))
    with pytest.raises(conv.GroundTruthError, match=r'does not exist'):
        conv.load_ground_truth(str(tmp_path / 'missing.pkl'))


def test_command_line(gt_pkl, tmp_path, capsys):
    out = tmp_path / 'ann'
    assert conv.main([gt_pkl, str(out), '--every', '2']) == 0
    printed = capsys.readouterr().out
    assert 'train: 2 videos, 10 keyframes, 12 boxes, 2 of 3 classes' in (
        printed)
    assert 'num_classes (model, datasets, metric): 4' in printed
    assert conv.main([gt_pkl, str(out), '--split', '5']) == 1
    assert 'error: --split 5 does not exist' in capsys.readouterr().err
