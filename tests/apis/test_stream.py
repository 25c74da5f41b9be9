"""Tests for ``evad_mm.apis.stream``: the bounded frame queue, the reader
thread and the stream loop, with a stand-in detector whose predictions take
a set time."""
import queue
import time

import numpy as np
import pytest

from evad_mm.apis import BoundedFrameQueue, FrameReader, process_stream
from evad_mm.apis.stream import KeepRateKeys, keep_rate_for_key, parse_source


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
    """An inferencer stand-in whose predictions take ``delay`` seconds and
    record the windows they get."""

    def __init__(self, window=4, delay=0.02):
        self.window_len, self.delay = window, delay
        self.windows = []

    def predict_window(self, frames):
        self.windows.append([int(f[0, 0, 0]) for f in frames])
        time.sleep(self.delay)
        return len(self.windows)


def test_bounded_queue_drops_oldest():
    q = BoundedFrameQueue(3)
    assert [q.put(i) for i in range(10)] == [True] * 3 + [False] * 7
    assert len(q) == 3 and q.dropped == 7 and q.max_len == 3
    with pytest.raises(queue.Empty):
        BoundedFrameQueue(2).get(timeout=0.01)
    q.close()
    assert [q.get(), q.get(), q.get()] == [7, 8, 9]  # the newest survive
    assert q.get() is None  # closed and drained
    with pytest.raises(RuntimeError, match='closed'):
        q.put(10)


def test_bounded_queue_drops_newest_and_validates():
    q = BoundedFrameQueue(2, drop='newest')
    for i in range(5):
        q.put(i)
    q.close()
    assert (q.get(), q.get(), q.get(), q.dropped) == (0, 1, None, 3)
    with pytest.raises(ValueError, match='>= 1'):
        BoundedFrameQueue(0)
    with pytest.raises(ValueError, match='drop'):
        BoundedFrameQueue(2, drop='middle')


def test_slow_consumer_drops_frames_instead_of_growing():
    """A reader thread outpacing a slow consumer: the queue never holds
    more than its size, and every frame is processed or dropped."""
    frames = BoundedFrameQueue(4)
    reader = FrameReader(FakeCapture(250), frames)
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
    rendered = []

    def render(frame, result, fps):
        rendered.append((int(frame[0, 0, 0]), result, fps))
        return frame

    drawn = []
    stats = process_stream(
        FakeCapture(120), detector, queue_size=2, predict_stride=2,
        read_fps=500, render=render, on_frame=drawn.append)
    assert stats.frames_read == 120
    assert stats.frames_dropped > 0 and stats.max_queue_len <= 2
    assert stats.frames_processed == 120 - stats.frames_dropped
    assert len(drawn) == len(rendered) == stats.frames_processed
    assert stats.predictions == len(detector.windows) >= 1
    assert stats.mean_inference_fps > 0
    assert 'dropped: ' in stats.summary()
    # each window holds the last 4 processed frames, oldest first
    processed = [f for f, _, _ in rendered]
    for window in detector.windows:
        end = processed.index(window[-1]) + 1
        assert window == processed[end - 4:end]
    # frames are drawn with the latest prediction and its FPS
    assert rendered[0][1:] == (None, None)
    assert rendered[-1][1] == len(detector.windows) and rendered[-1][2] > 0


def test_process_stream_limits_and_user_stop():
    stats = process_stream(FakeCapture(50), SlowDetector(delay=0),
                           queue_size=64, max_frames=12, predict_stride=3)
    assert (stats.frames_read, stats.frames_processed,
            stats.frames_dropped) == (12, 12, 0)
    # the window fills at frame 4, then one prediction every 3 frames
    assert stats.predictions == 3
    keys = iter([-1, -1, ord('5'), ord('q')] + [-1] * 100)
    pressed = []
    stats = process_stream(
        FakeCapture(50), SlowDetector(delay=0), queue_size=64,
        read_fps=200, show=lambda frame: next(keys), on_key=pressed.append)
    assert stats.stopped_by_user and stats.frames_processed == 4
    assert pressed == [ord('5')]
    # a duration limit stops an endless source
    tic = time.monotonic()
    stats = process_stream(FakeCapture(10**9), SlowDetector(delay=0),
                           duration=0.3, read_fps=100)
    assert time.monotonic() - tic < 5 and 0 < stats.frames_read < 200
    with pytest.raises(ValueError, match='predict_stride'):
        process_stream(FakeCapture(1), SlowDetector(), predict_stride=0)


def test_frames_reach_the_model_as_rgb():
    class BGRCapture(FakeCapture):

        def read(self):
            ok, frame = super().read()
            if ok:
                frame[..., 0] = 255  # blue in OpenCV's BGR order
            return ok, frame

    detector = SlowDetector(window=1, delay=0)
    seen = []
    detector.predict_window = lambda frames: seen.append(frames[-1].copy())
    process_stream(BGRCapture(3), detector, predict_stride=1)
    assert len(seen) == 3 and all((f[..., 2] == 255).all() for f in seen)


def test_reader_reports_errors():

    class Broken:

        def read(self):
            raise OSError('camera unplugged')

    with pytest.raises(RuntimeError, match='camera unplugged'):
        process_stream(Broken(), SlowDetector(delay=0))


def test_keep_rate_keys():
    assert keep_rate_for_key(ord('5')) == 0.5
    assert keep_rate_for_key(ord('0')) == 1.0
    assert keep_rate_for_key(ord('x')) is None

    class Inferencer:
        def __init__(self, fixed=False):
            self.rates, self.fixed = [], fixed

        def set_keep_rate(self, rate):
            self.rates.append(rate)
            if self.fixed:
                raise ValueError('fixed in the graph')

    inferencer = Inferencer()
    keys = KeepRateKeys(inferencer)
    for key in (ord('3'), ord('x'), ord('0')):
        keys(key)
    assert inferencer.rates == [0.3, 1.0]
    fixed = KeepRateKeys(Inferencer(fixed=True))
    fixed(ord('5'))  # logged, not raised
    assert not fixed.enabled
    fixed(ord('6'))  # the keys are off: not tried again
    assert fixed.inferencer.rates == [0.5]


def test_parse_source():
    assert parse_source('0') == 0 and parse_source(' 2 ') == 2
    assert parse_source('video.mp4') == 'video.mp4'
    assert parse_source('rtsp://host/stream') == 'rtsp://host/stream'
