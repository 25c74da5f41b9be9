"""Tests for ``tools/webcam_demo.py``: headless runs on a small generated
video (toy config, random weights, CPU), keep-rate control and errors. The
queue and the stream loop are tested in ``tests/apis/test_stream.py``."""
from pathlib import Path

import pytest
import torch

from evad_mm.apis import EVADInferencer, RandomWeightsWarning
from evad_mm.visualization import ActionDetectionVisualizer

from tests.conftest import (export_toy_onnx, load_tool, moving_square_clip,
                            write_mp4)

REPO = Path(__file__).resolve().parents[2]
TOY = str(REPO / 'configs' / 'evad_toy_ava.py')
T, H, W, FPS = 40, 64, 64, 10


webcam = load_tool('webcam_demo')


@pytest.fixture(scope='module')
def clip_mp4(tmp_path_factory):
    """40 frames of 64x64 at 10 fps: a bright square moving over noise."""
    clip = moving_square_clip(T, (H, W), slice(16, 48), 2, 24, 1)
    return write_mp4(tmp_path_factory.mktemp('video') / 'clip.mp4', clip, FPS)


def _frame_count(path):
    import decord
    reader = decord.VideoReader(str(path))
    return len(reader), reader[0].shape


def _summary(out):
    line = out.strip().splitlines()[-1]
    assert line.startswith('frames read:'), out
    fields = dict(part.rsplit(': ', 1) for part in line.split(', '))
    return {k: float(v) for k, v in fields.items()}


def test_headless_run_writes_video(clip_mp4, tmp_path, capsys):
    out = tmp_path / 'live' / 'out.mp4'
    with pytest.warns(RandomWeightsWarning):
        rc = webcam.main([
            clip_mp4, TOY, '--no-show', '--max-frames', '30', '--out',
            str(out), '--read-fps', '0', '--queue-size', '64',
            '--predict-stride', '8', '--score-thr', '0.3'
        ])
    assert rc == 0
    captured = capsys.readouterr()
    stats = _summary(captured.out)
    # no frame dropped: the queue holds the whole input; the toy config
    # takes 8 frames 2 apart: predictions at frames 16 and 24
    assert (stats['frames read'], stats['dropped'], stats['processed'],
            stats['predictions']) == (30, 0, 30, 2)
    assert 'window 16 frames (clip_len 8 x frame_interval 2)' in captured.err
    assert stats['mean inference FPS'] > 0
    assert _frame_count(out) == (30, (H, W, 3))


def test_slow_model_drops_frames(clip_mp4, tmp_path, capsys):
    """A tiny queue and a stream faster than the model: frames are dropped
    and only the processed ones are written."""
    out = tmp_path / 'out.mp4'
    with pytest.warns(RandomWeightsWarning):
        rc = webcam.main([
            clip_mp4, TOY, '--no-show', '--out', str(out), '--read-fps',
            '400', '--queue-size', '2', '--predict-stride', '1'
        ])
    assert rc == 0
    stats = _summary(capsys.readouterr().out)
    assert stats['frames read'] == T
    assert stats['dropped'] > 0
    assert stats['processed'] == T - stats['dropped']
    assert _frame_count(out)[0] == stats['processed']


def test_keep_rate_override():
    args = webcam.parse_args([
        '0', TOY, '--keep-rate', '0.5', '--no-show', '--max-frames', '1'
    ])
    with pytest.warns(RandomWeightsWarning):
        inferencer = webcam.build(args)
    assert isinstance(inferencer, EVADInferencer)
    assert inferencer.model.backbone.keep_rate == (0.5, 0.5, 0.5)  # was 0.7
    text = ActionDetectionVisualizer.keep_rate_text
    assert text(inferencer.keep_rate) == 'rho 0.5'
    inferencer.set_keep_rate([0.4, 0.6, 0.8])
    assert inferencer.model.backbone.keep_rate == (0.4, 0.6, 0.8)
    assert text(inferencer.keep_rate) == 'rho 0.4/0.6/0.8'
    with pytest.raises(ValueError, match=r'\(0, 1\]'):
        inferencer.set_keep_rate(1.5)
    with pytest.raises(ValueError, match='one per prune layer'):
        inferencer.set_keep_rate([0.5, 0.5])
    # a backbone without token pruning (e.g. mmaction2's ViT)
    inferencer.model.backbone = torch.nn.Identity()
    with pytest.raises(ValueError, match='Identity has no keep_rate'):
        inferencer.set_keep_rate(0.5)
    assert text(inferencer.keep_rate) == 'rho -'
    # a model without the control at all
    other = torch.nn.Module()
    other.cfg = inferencer.cfg
    with pytest.raises(ValueError, match='no set_keep_rate'):
        EVADInferencer(other).set_keep_rate(0.5)


def test_keep_rate_used_in_a_run(clip_mp4, capsys, monkeypatch):
    seen = []
    build = webcam.build

    def spy(args):
        inferencer = build(args)
        seen.append(inferencer.model.backbone.keep_rate)
        return inferencer

    monkeypatch.setattr(webcam, 'build', spy)
    with pytest.warns(RandomWeightsWarning):
        rc = webcam.main([clip_mp4, TOY, '--no-show', '--max-frames', '16',
                          '--read-fps', '0', '--queue-size', '16',
                          '--keep-rate', '1.0'])
    assert rc == 0 and seen == [(1.0, 1.0, 1.0)]
    captured = capsys.readouterr()
    assert 'rho 1' in captured.err
    assert _summary(captured.out)['predictions'] == 1


def test_exported_model_keeps_its_keep_rate(clip_mp4, tmp_path, capsys):
    """A live run of an exported model; changing its keep rate (fixed in
    the graph) is refused with a message, not a crash."""
    onnx = export_toy_onnx(tmp_path / 'toy.onnx', (8, H, W))
    assert webcam.main([clip_mp4, onnx, '--no-show', '--max-frames', '16',
                        '--read-fps', '0', '--queue-size', '16']) == 0
    captured = capsys.readouterr()
    assert 'rho 0.7' in captured.err
    assert _summary(captured.out)['predictions'] == 1
    assert webcam.main([clip_mp4, onnx, '--no-show', '--keep-rate',
                        '0.5']) == 1
    assert 'fixed in the graph' in capsys.readouterr().err


def test_errors(tmp_path, capsys):
    missing = str(tmp_path / 'no_such_video.mp4')
    assert webcam.main([missing, TOY, '--no-show']) == 1
    assert 'no_such_video.mp4' in capsys.readouterr().err
    bad = tmp_path / 'broken.mp4'
    bad.write_bytes(b'not a video' * 64)
    assert webcam.main([str(bad), TOY, '--no-show']) == 1
    assert 'broken.mp4' in capsys.readouterr().err
    onnx = tmp_path / 'evad.onnx'
    onnx.write_bytes(b'')
    assert webcam.main(['0', str(onnx), '--checkpoint', 'best.pth']) == 1
    assert 'drop the checkpoint' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        webcam.parse_args(['0', TOY, '--queue-size', '0'])
