"""Tests for ``tools/demo.py`` on a small generated clip (toy config, random
weights, CPU)."""
import os.path as osp
import subprocess
import sys
from pathlib import Path

import pytest

from evad_mm.apis import RandomWeightsWarning

from tests.conftest import (export_toy_onnx, load_tool, moving_square_clip,
                            write_mp4)

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / 'tools' / 'demo.py'
TOY = str(REPO / 'configs' / 'evad_toy_ava.py')
DEMO_MP4 = '/work/shared/data/mmaction2/demo/demo.mp4'
T, H, W, FPS = 40, 96, 128, 10


demo = load_tool('demo')


@pytest.fixture(scope='module')
def clip_mp4(tmp_path_factory):
    """40 frames of 96x128 at 10 fps: a bright square moving over noise."""
    clip = moving_square_clip(T, (H, W), slice(30, 70), 5, 30, 2)
    return write_mp4(tmp_path_factory.mktemp('video') / 'clip.mp4', clip, FPS)


def _read_back(path):
    import decord
    reader = decord.VideoReader(path)
    return len(reader), reader[0].shape, reader.get_avg_fps()


def test_demo_renders(clip_mp4, tmp_path, capsys):
    out = tmp_path / 'sub' / 'out.mp4'
    with pytest.warns(RandomWeightsWarning):
        rc = demo.main([
            clip_mp4, TOY, '--out', str(out), '--start', '0.5', '--end',
            '2.5', '--output-stepsize', '2', '--actor-thr', '0',
            '--score-thr', '0.3'
        ])
    assert rc == 0
    err = capsys.readouterr().err
    assert 'RANDOM WEIGHTS' in err
    assert out.stat().st_size > 0
    # frames 5..24, one in 2, at 10 / 2 fps
    assert _read_back(str(out)) == (10, (H, W, 3), 5.0)


def test_demo_runs_an_exported_model(clip_mp4, tmp_path, capsys):
    """``tools/demo.py VIDEO MODEL.onnx``: no config, no checkpoint."""
    # 96x128 frames are resized to the exported 48x64
    onnx = export_toy_onnx(tmp_path / 'toy.onnx', (8, 48, 64))
    out = tmp_path / 'out.mp4'
    assert demo.main([clip_mp4, onnx, '--out', str(out), '--end', '1']) == 0
    captured = capsys.readouterr()
    assert 'RANDOM WEIGHTS' not in captured.err
    assert 'Wrote 10 frames (128x96, 10 fps)' in captured.out
    assert _read_back(str(out)) == (10, (H, W, 3), 10.0)
    assert demo.main([clip_mp4, onnx, '--out', str(out), '--short-side',
                      '128']) == 1
    assert 'fixed at export' in capsys.readouterr().err


def test_missing_video_exits_nonzero(tmp_path):
    missing = str(tmp_path / 'no_such_video.mp4')
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), missing, TOY, '--out',
         str(tmp_path / 'out.mp4')],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert 'no_such_video.mp4' in proc.stderr
    assert not (tmp_path / 'out.mp4').exists()


@pytest.mark.parametrize('content', [b'', b'not a video at all' * 64])
def test_unreadable_video(tmp_path, capsys, content):
    bad = tmp_path / 'broken.mp4'
    bad.write_bytes(content)
    rc = demo.main([str(bad), TOY, '--out', str(tmp_path / 'out.mp4')])
    assert rc == 1
    err = capsys.readouterr().err
    assert 'error:' in err and str(bad) in err
    assert not (tmp_path / 'out.mp4').exists()


def test_model_argument_errors(clip_mp4, tmp_path, capsys):
    out = str(tmp_path / 'out.mp4')
    assert demo.main([clip_mp4, str(tmp_path / 'none.py'), '--out', out]) \
        == 1
    assert 'config file not found' in capsys.readouterr().err
    onnx = tmp_path / 'evad.onnx'
    assert demo.main([clip_mp4, str(onnx), '--out', out]) == 1
    assert 'exported model not found' in capsys.readouterr().err
    onnx.write_bytes(b'')
    assert demo.main([clip_mp4, str(onnx), 'best.pth', '--out', out]) == 1
    assert 'drop the checkpoint' in capsys.readouterr().err
    assert not osp.exists(out)


def test_wrong_label_map(clip_mp4, tmp_path, capsys):
    label_map = tmp_path / 'labels.txt'
    label_map.write_text('1: a\n2: b\n')
    with pytest.warns(RandomWeightsWarning):
        rc = demo.main([clip_mp4, TOY, '--out', str(tmp_path / 'out.mp4'),
                        '--label-map', str(label_map)])
    assert rc == 1
    assert '2 classes' in capsys.readouterr().err


@pytest.mark.skipif(not osp.isfile(DEMO_MP4),
                    reason=f'{DEMO_MP4} is not present')
def test_demo_on_mmaction2_demo_video(tmp_path):
    out = tmp_path / 'demo_out.mp4'
    with pytest.warns(RandomWeightsWarning):
        rc = demo.main([DEMO_MP4, TOY, '--out', str(out), '--end', '2',
                        '--short-side', '128'])
    assert rc == 0
    # 340x256 at 28 fps: the first 2 s are 56 frames
    assert _read_back(str(out)) == (56, (256, 340, 3), 28.0)
