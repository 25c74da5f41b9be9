"""Tests for ``tools/demo.py`` on a small generated clip (toy config, random
weights, CPU)."""
import os.path as osp
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evad_mm.apis import RandomWeightsWarning

from tests.conftest import load_tool, moving_square_clip, write_mp4

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


def test_draw_and_keyframe_assignment():
    from evad_mm.apis import KeyframeResult
    assert demo.nearest_keyframe(np.arange(16), [4, 12]).tolist() == \
        [0] * 8 + [1] * 8
    assert demo.nearest_keyframe(np.arange(3), [7]).tolist() == [0, 0, 0]
    r = KeyframeResult(
        frame_index=0, time=0., bboxes=np.array([[10., 10., 60., 50.]]),
        bboxes_normalized=np.array([[10 / W, 10 / H, 60 / W, 50 / H]]),
        scores=np.full((1, 7), .5), actor_scores=np.array([.9]),
        labels=[['wave']], label_ids=[[7]], label_scores=[[.5]],
        image_shape=(H, W))
    frame = np.zeros((H, W, 3), np.uint8)
    drawn = demo.draw_result(frame, r)
    assert drawn.shape == frame.shape and not frame.any()
    assert drawn[10:51, 10].any() and not drawn[80:, 100:].any()
    hidden = demo.draw_result(frame, r, actor_thr=0.95)
    assert not hidden.any()


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
