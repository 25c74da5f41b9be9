"""Tests for ``tools/webcam_demo.py``: the bounded frame queue, the stream
loop, and headless runs on a small generated video (toy config, random
weights, CPU)."""
import queue
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from evad_mm.apis import RandomWeightsWarning

from tests.conftest import load_tool, moving_square_clip, write_mp4

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


class FakeCapture:
    """``cv2.VideoCapture``-like: ``n`` (8, 8, 3) frames, frame i filled
    with i % 256."""

    def __init__(self, n):
        self.n = n
        self.i = 0

    def read(self):
        if self.i >= self.n:
            return False, None
        self.i += 1
        return True, np.full((8, 8, 3), self.i % 256, np.uint8)


class SlowDetector:
    """A detector stand-in whose predictions take ``delay`` seconds."""

    def __init__(self, window=4, delay=0.02):
        self.window, self.delay = [], delay
        self.size = window
        self.seen = []

    @property
    def ready(self):
        return len(self.window) >= self.size

    def push(self, frame):
        self.seen.append(int(frame[0, 0, 0]))
        self.window = (self.window + [frame])[-self.size:]

    def predict(self):
        time.sleep(self.delay)
        return None

    def keep_rate_text(self):
        return 'rho 0.7'


def test_bounded_queue_drops_oldest():
    q = webcam.BoundedFrameQueue(3)
    assert [q.put(i) for i in range(10)] == [True] * 3 + [False] * 7
    assert len(q) == 3 and q.dropped == 7 and q.max_len == 3
    with pytest.raises(queue.Empty):
        webcam.BoundedFrameQueue(2).get(timeout=0.01)
    q.close()
    assert [q.get(), q.get(), q.get()] == [7, 8, 9]  # the newest survive
    assert q.get() is None  # closed and drained
    with pytest.raises(RuntimeError, match='closed'):
        q.put(10)


def test_bounded_queue_drops_newest_and_validates():
    q = webcam.BoundedFrameQueue(2, drop='newest')
    for i in range(5):
        q.put(i)
    q.close()
    assert (q.get(), q.get(), q.get(), q.dropped) == (0, 1, None, 3)
    with pytest.raises(ValueError, match='>= 1'):
        webcam.BoundedFrameQueue(0)
    with pytest.raises(ValueError, match='drop'):
        webcam.BoundedFrameQueue(2, drop='middle')


def test_slow_consumer_drops_frames_instead_of_growing():
    """A reader thread outpacing a slow consumer: the queue never holds
    more than its size, and every frame is processed or dropped."""
    frames = webcam.BoundedFrameQueue(4)
    reader = webcam.FrameReader(FakeCapture(250), frames)
    reader.start()
    consumed = []
    while True:
        item = frames.get(timeout=5)
        if item is None:
            break
        consumed.append(int(item[0, 0, 0]))
        time.sleep(0.002)
        assert len(frames) <= 4
    reader.join(timeout=5)
    assert reader.frames_read == 250 and reader.error is None
    assert frames.max_len <= 4 and frames.dropped > 0
    assert len(consumed) + frames.dropped == 250
    assert consumed == sorted(consumed)  # FIFO, gaps where frames dropped


def test_process_stream_counts_drops():
    detector = SlowDetector(window=4, delay=0.05)
    drawn = []
    stats = webcam.process_stream(
        FakeCapture(120), detector, queue_size=2, predict_stride=2,
        read_fps=500, on_frame=drawn.append)
    assert stats.frames_read == 120
    assert stats.frames_dropped > 0 and stats.max_queue_len <= 2
    assert stats.frames_processed == 120 - stats.frames_dropped
    assert len(drawn) == len(detector.seen) == stats.frames_processed
    assert stats.predictions >= 1 and stats.mean_inference_fps > 0
    assert 'dropped: ' in stats.summary()


def test_process_stream_limits_and_user_stop():
    stats = webcam.process_stream(FakeCapture(50), SlowDetector(delay=0),
                                  queue_size=64, max_frames=12,
                                  predict_stride=3)
    assert (stats.frames_read, stats.frames_processed,
            stats.frames_dropped) == (12, 12, 0)
    # the window fills at frame 4, then one prediction every 3 frames
    assert stats.predictions == 3
    keys = iter([-1, -1, ord('5'), ord('q')] + [-1] * 100)
    pressed = []
    stats = webcam.process_stream(
        FakeCapture(50), SlowDetector(delay=0), queue_size=64,
        read_fps=200, show=lambda frame: next(keys), on_key=pressed.append)
    assert stats.stopped_by_user and stats.frames_processed == 4
    assert pressed == [ord('5')]
    assert webcam.keep_rate_for_key(ord('5')) == 0.5
    assert webcam.keep_rate_for_key(ord('0')) == 1.0
    assert webcam.keep_rate_for_key(ord('x')) is None
    # a duration limit stops an endless source
    tic = time.monotonic()
    stats = webcam.process_stream(FakeCapture(10**9), SlowDetector(delay=0),
                                  duration=0.3, read_fps=100)
    assert time.monotonic() - tic < 5 and 0 < stats.frames_read < 200


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
    assert webcam.parse_source(args.source) == 0
    with pytest.warns(RandomWeightsWarning):
        model = webcam.build_model(args)
    assert model.backbone.keep_rate == (0.5, 0.5, 0.5)  # was 0.7
    assert webcam.keep_rate_text(model) == 'rho 0.5'
    webcam.set_keep_rate(model, [0.4, 0.6, 0.8])
    assert model.backbone.keep_rate == (0.4, 0.6, 0.8)
    assert webcam.keep_rate_text(model) == 'rho 0.4/0.6/0.8'
    with pytest.raises(ValueError, match=r'\(0, 1\]'):
        webcam.set_keep_rate(model, 1.5)
    with pytest.raises(ValueError, match='one per prune layer'):
        webcam.set_keep_rate(model, [0.5, 0.5])
    # a backbone without token pruning (e.g. mmaction2's ViT)
    other = SimpleNamespace(backbone=torch.nn.Identity())
    with pytest.raises(ValueError, match='Identity has no keep_rate'):
        webcam.set_keep_rate(other, 0.5)
    assert webcam.keep_rate_text(other) == 'rho -'


def test_keep_rate_used_in_a_run(clip_mp4, capsys, monkeypatch):
    seen = []
    build = webcam.build_model

    def spy(args):
        model = build(args)
        seen.append(model.backbone.keep_rate)
        return model

    monkeypatch.setattr(webcam, 'build_model', spy)
    with pytest.warns(RandomWeightsWarning):
        rc = webcam.main([clip_mp4, TOY, '--no-show', '--max-frames', '16',
                          '--read-fps', '0', '--queue-size', '16',
                          '--keep-rate', '1.0'])
    assert rc == 0 and seen == [(1.0, 1.0, 1.0)]
    captured = capsys.readouterr()
    assert 'rho 1' in captured.err
    assert _summary(captured.out)['predictions'] == 1


def test_errors(tmp_path, capsys):
    missing = str(tmp_path / 'no_such_video.mp4')
    assert webcam.main([missing, TOY, '--no-show']) == 1
    assert 'no_such_video.mp4' in capsys.readouterr().err
    bad = tmp_path / 'broken.mp4'
    bad.write_bytes(b'not a video' * 64)
    assert webcam.main([str(bad), TOY, '--no-show']) == 1
    assert 'broken.mp4' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        webcam.parse_args(['0', TOY, '--queue-size', '0'])


def test_draw_overlay():
    frame = np.zeros((H, W, 3), np.uint8)
    drawn = webcam.draw_overlay(frame, None, 2.5, 'rho 0.7')
    assert drawn.shape == frame.shape and not frame.any()
    assert drawn[-10:].any() and not drawn[:20].any()  # status line only


def test_reader_reports_errors():

    class Broken:

        def read(self):
            raise OSError('camera unplugged')

    with pytest.raises(RuntimeError, match='camera unplugged'):
        webcam.process_stream(Broken(), SlowDetector(delay=0))
