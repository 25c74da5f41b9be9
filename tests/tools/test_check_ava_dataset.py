"""Tests for ``tools/data/check_ava_dataset.py`` on generated toy AVA data.

A small clean set (3 videos x 6 s, ``tools/make_toy_ava.py``) is generated
once per module; every test that changes it works on its own copy. The
probe sampler is compared with mmaction2's ``SampleAVAFrames`` in
``tests/datasets/test_ava_check.py``.
"""
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import load_tool, write_mp4

REPO = Path(__file__).resolve().parents[2]
FPS, T0, SECONDS = 10, 900, 6
T1 = T0 + SECONDS
NUM_CLASSES = 8  # 7 toy classes + column 0


toy = load_tool('make_toy_ava')
checker = load_tool('data', 'check_ava_dataset')


@pytest.fixture(scope='module')
def clean_set(tmp_path_factory):
    out = tmp_path_factory.mktemp('toy_ava')
    toy.make_toy_ava(str(out), videos=3, seed=0, seconds=SECONDS)
    return out


@pytest.fixture
def data(clean_set, tmp_path):
    """A private copy of the clean set."""
    root = tmp_path / 'toy'
    shutil.copytree(clean_set, root)
    return root


def _paths(root, split='train'):
    ann = root / 'annotations'
    return dict(
        csv=ann / f'{split}.csv',
        exclude=ann / f'{split}_excluded_timestamps.csv',
        pbtxt=ann / 'action_list.pbtxt')


def _explicit_argv(root, split='train', *extra):
    p = _paths(root, split)
    return [
        '--ann-file',
        str(p['csv']), '--exclude-file',
        str(p['exclude']), '--label-file',
        str(p['pbtxt']), '--frame-dir',
        str(root / 'rawframes'), '--fps',
        str(FPS), '--timestamp-start',
        str(T0), '--timestamp-end',
        str(T1), '--clip-len', '8', '--frame-interval', '2', '--num-classes',
        str(NUM_CLASSES), '--split', split, *extra
    ]


def _run(argv, capsys):
    code = checker.main([str(a) for a in argv])
    return code, capsys.readouterr().out


def _csv_rows(path):
    return path.read_text().splitlines()


def _write_rows(path, rows):
    path.write_text(''.join(r + '\n' for r in rows))


def _edit_row(path, lineno, column, value):
    rows = _csv_rows(path)
    parts = rows[lineno - 1].split(',')
    parts[column] = value
    rows[lineno - 1] = ','.join(parts)
    _write_rows(path, rows)


def _toy_config(root, tmp_path, extra=''):
    """A config inheriting configs/evad_toy_ava.py, on ``root``."""
    ann = root / 'annotations'
    text = f"""
_base_ = [{str(REPO / 'configs' / 'evad_toy_ava.py')!r}]
ann_root = {str(ann)!r}
common = dict(label_file=f'{{ann_root}}/action_list.pbtxt',
              timestamp_end={T1},
              data_prefix=dict(img={str(root / 'rawframes')!r}))
train_dataloader = dict(dataset=dict(
    ann_file=f'{{ann_root}}/train.csv',
    exclude_file=f'{{ann_root}}/train_excluded_timestamps.csv', **common))
val_dataloader = dict(dataset=dict(
    ann_file=f'{{ann_root}}/val.csv',
    exclude_file=f'{{ann_root}}/val_excluded_timestamps.csv', **common))
test_dataloader = val_dataloader
val_evaluator = dict(
    ann_file=f'{{ann_root}}/val.csv',
    label_file=f'{{ann_root}}/action_list.pbtxt',
    exclude_file=f'{{ann_root}}/val_excluded_timestamps.csv')
test_evaluator = val_evaluator
{extra}"""
    path = tmp_path / 'my_toy_config.py'
    path.write_text(text)
    return path


def _table_row(out, split):
    line = next(x for x in out.splitlines() if x.startswith(split + ' '))
    return line.split()


def test_clean_set_passes_explicit_paths(data, capsys):
    rows = [r.split(',') for r in _csv_rows(_paths(data)['csv'])]
    keyframes = {(r[0], r[1]) for r in rows}
    boxes = {(r[0], r[1], *r[2:6]) for r in rows}
    code, out = _run(_explicit_argv(data), capsys)
    assert code == 0, out
    assert 'OK: 0 errors' in out
    split, videos, n_keys, excluded, n_boxes, n_rows = _table_row(
        out, 'train')[:6]
    assert int(videos) == len({k[0] for k in keyframes})
    assert int(n_keys) == len(keyframes) and int(excluded) == 0
    assert int(n_boxes) == len(boxes) and int(n_rows) == len(rows)
    for split in ('val', ):
        code, out = _run(_explicit_argv(data, split, '--test-mode'), capsys)
        assert code == 0, out


def test_clean_set_passes_through_config(data, tmp_path, capsys):
    config = _toy_config(data, tmp_path)
    code, out = _run([config], capsys)
    assert code == 0, out
    assert _table_row(out, 'train')[-2] == '0'
    assert _table_row(out, 'val')[-2] == '0'
    assert 'test: the same data set and evaluator as val' in out
    code, out = _run([config, '--split', 'val'], capsys)
    assert code == 0 and 'train ' not in out


def test_config_class_settings_must_agree(data, tmp_path, capsys):
    config = _toy_config(
        data, tmp_path, 'model = dict(action_head=dict(num_classes=9))\n'
        'val_evaluator = dict(num_classes=9)\n')
    code, out = _run([config, '--split', 'val'], capsys)
    assert code == 1
    assert 'model.action_head.num_classes=9' in out
    assert 'the evaluator has num_classes=9' in out


def test_time_range_applies_without_raw_frame_init_only(
        data, tmp_path, capsys):
    """AVADataset's shared [timestamp_start, timestamp_end] frame range
    is checked only where the pipeline does not count each video's frames:
    with RawFrameInit the config needs no timestamp_end at all."""
    config = _toy_config(
        data, tmp_path, """
train_dataloader['dataset'].update(timestamp_end=901)
""")
    code, out = _run([config, '--split', 'train'], capsys)
    assert code == 1 and 'outside [timestamp_start, timestamp_end]' in out
    config = _toy_config(
        data, tmp_path, """
train_dataloader['dataset'].update(
    timestamp_end=901, start_index=0,
    pipeline=[dict(type='RawFrameInit', first_index=1),
              dict(type='SampleAVAFrames', clip_len=8, frame_interval=2)])
""")
    code, out = _run([config, '--split', 'train'], capsys)
    assert code == 0, out
    # the probe still reads the frame files RawFrameInit numbers
    video_id, timestamp = _csv_rows(_paths(data)['csv'])[0].split(',')[:2]
    name = f'img_{FPS * (int(timestamp) - T0) + 1:05d}.jpg'
    (data / 'rawframes' / video_id / name).unlink()
    code, out = _run([config, '--split', 'train'], capsys)
    assert code == 1 and name in out


def test_video_files_are_opened_once_each(data, tmp_path, capsys):
    """With ``use_frames=False`` the split's video reader (``DecordInit``)
    opens each ``<data_prefix.img>/<video_id>.mp4``."""
    import cv2
    videos = tmp_path / 'videos'
    videos.mkdir()
    for folder in (data / 'rawframes').iterdir():
        frames = [
            cv2.imread(str(f))[..., ::-1]
            for f in sorted(folder.glob('img_*.jpg'))[:8]
        ]
        write_mp4(videos / f'{folder.name}.mp4', np.stack(frames), FPS)
    config = _toy_config(
        data, tmp_path, f"""
train_dataloader['dataset'].update(
    use_frames=False, data_prefix=dict(img={str(videos)!r}),
    pipeline=[dict(type='DecordInit'),
              dict(type='SampleAVAFrames', clip_len=8, frame_interval=2)])
""")
    code, out = _run([config, '--split', 'train'], capsys)
    assert code == 0, out
    (videos / 'toy_v000.mp4').unlink()
    code, out = _run([config, '--split', 'train'], capsys)
    assert code == 1
    assert out.count('toy_v000.mp4') == 1 and 'No such file' in out


def _swap_x(p):
    rows = _csv_rows(p['csv'])
    parts = rows[0].split(',')
    parts[2], parts[4] = parts[4], parts[2]
    rows[0] = ','.join(parts)
    _write_rows(p['csv'], rows)
    return p['csv'], 1, 'x1 < x2'


def _box_above_one(p):
    _edit_row(p['csv'], 2, 4, '1.500')
    return p['csv'], 2, 'outside [0, 1]'


def _timestamp_out_of_range(p):
    _edit_row(p['csv'], 1, 1, f'{T1 + 5:04d}')
    return p['csv'], 1, 'outside [timestamp_start, timestamp_end]'


def _fractional_timestamp(p):
    _edit_row(p['csv'], 3, 1, '902.5')
    return p['csv'], 3, 'is not an integer'


def _action_id_too_big(p):
    _edit_row(p['csv'], 2, 6, str(NUM_CLASSES))
    return p['csv'], 2, f'>= num_classes {NUM_CLASSES}'


def _seven_columns(p):
    rows = _csv_rows(p['csv'])
    rows[2] = rows[2].rsplit(',', 1)[0]
    _write_rows(p['csv'], rows)
    return p['csv'], 3, '7 columns, expected 8'


def _header_line(p):
    _write_rows(p['csv'],
                ['video_id,timestamp,x1,y1,x2,y2,action_id,'
                 'entity_id'] + _csv_rows(p['csv']))
    return p['csv'], 1, 'remove the header line'


def _pbtxt_four_spaces(p):
    text = p['pbtxt'].read_text().replace('\n  ', '\n    ')
    p['pbtxt'].write_text(text)
    return p['pbtxt'], 2, 'indented by 4 characters'


def _pbtxt_missing_id(p):
    text = p['pbtxt'].read_text()
    p['pbtxt'].write_text(text.replace('  id: 2\n', '', 1))
    return p['pbtxt'], 5, 'no `id:` line'


def _pbtxt_unquoted_name(p):
    text = p['pbtxt'].read_text()
    p['pbtxt'].write_text(text.replace('"grow"', 'grow', 1))
    return p['pbtxt'], 10, 'not in double quotes'


def _excluded_three_columns(p):
    rows = _csv_rows(p['exclude'])
    rows.insert(0, 'toy_v000,0903,1')
    _write_rows(p['exclude'], rows)
    return p['exclude'], 1, '3 columns, expected 2'


CORRUPTIONS = [
    _swap_x, _box_above_one, _timestamp_out_of_range, _fractional_timestamp,
    _action_id_too_big, _seven_columns, _header_line, _pbtxt_four_spaces,
    _pbtxt_missing_id, _pbtxt_unquoted_name, _excluded_three_columns
]


@pytest.mark.parametrize(
    'corrupt', CORRUPTIONS, ids=[c.__name__[1:] for c in CORRUPTIONS])
def test_corruption_is_an_error_at_its_line(data, capsys, corrupt):
    path, line, message = corrupt(_paths(data))
    code, out = _run(_explicit_argv(data), capsys)
    assert code == 1, out
    located = [x for x in out.splitlines() if f'{path}:{line}: error' in x]
    assert located and any(message in x for x in located), out
    assert 'FAILED' in out


def test_missing_frame_of_a_clip_is_an_error(data, capsys):
    p = _paths(data)
    video_id, timestamp = _csv_rows(p['csv'])[0].split(',')[:2]
    # mmaction2 adds start_index (1) twice: the keyframe is file 10 * s + 2
    keyframe_file = FPS * (int(timestamp) - T0) + 2
    name = f'img_{keyframe_file:05d}.jpg'
    (data / 'rawframes' / video_id / name).unlink()
    code, out = _run(_explicit_argv(data), capsys)
    assert code == 1
    assert any(f'{p["csv"]}:1: error' in x and name in x
               for x in out.splitlines()), out


def test_missing_frame_folder_is_an_error(data, capsys):
    p = _paths(data)
    video_id = _csv_rows(p['csv'])[0].split(',')[0]
    shutil.rmtree(data / 'rawframes' / video_id)
    code, out = _run(_explicit_argv(data), capsys)
    assert code == 1 and f'{p["csv"]}:1: error: frame folder' in out


def test_frames_no_clip_reads_may_be_missing(data, capsys):
    # 8x2 clips, 6 s at 10 fps: indices are clamped to [0, 59] and shifted
    # by start_index, so files 1, 2 (before the first clip) and 61 (past
    # the clamp) are never read
    for video in (data / 'rawframes').iterdir():
        for index in (1, 2, FPS * SECONDS + 1):
            (video / f'img_{index:05d}.jpg').unlink()
    code, out = _run(_explicit_argv(data), capsys)
    assert code == 0, out
    # clips of 60 x 2 frames reach past both ends: clamped to file 1 and 60
    code, out = _run(_explicit_argv(data, 'train', '--clip-len', '60'), capsys)
    assert code == 1 and 'img_00001.jpg, img_00002.jpg' in out
    assert 'img_00061.jpg' not in out


def test_warnings_do_not_fail(data, capsys):
    p = _paths(data)
    rows = _csv_rows(p['csv'])
    _write_rows(p['csv'], rows + [rows[0]])
    _write_rows(p['exclude'], _csv_rows(p['exclude']) + ['no_such,0903'])
    code, out = _run(_explicit_argv(data), capsys)
    assert code == 0, out
    assert f'{p["csv"]}:{len(rows) + 1}: warning: same as line 1' in out
    assert "video 'no_such' has no row" in out
    assert 'has no example in the train split' in out


def test_custom_classes(data, capsys):
    code, out = _run(
        _explicit_argv(data, 'train', '--custom-classes', '1,2', '--num-'
                       'classes', '3'), capsys)
    assert code == 0, out
    assert 'skipped by AVADataset' in out
    code, out = _run(
        _explicit_argv(data, 'train', '--custom-classes', '1,9', '--num-'
                       'classes', '4'), capsys)
    assert code == 1
    assert 'custom_classes [9] are not in the label map' in out
    assert 'custom_classes has 2 ids' in out


def test_output_is_bounded(data, capsys):
    p = _paths(data)
    rows = _csv_rows(p['csv'])
    bad = [r.split(',') for r in rows]
    for parts in bad:
        parts[4] = '2.0'
    _write_rows(p['csv'], [','.join(parts) for parts in bad])
    code, out = _run(_explicit_argv(data, 'train', '--max-shown', '5'), capsys)
    assert code == 1
    assert out.count('outside [0, 1]') == 5
    assert f'... and {len(rows) - 5} more' in out
