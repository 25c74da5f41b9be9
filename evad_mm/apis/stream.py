"""Detection on a live stream: a reader thread, a bounded frame queue and a
sliding clip window.

A :class:`FrameReader` thread pushes the frames of a camera or video into a
:class:`BoundedFrameQueue`; when the detector falls behind, frames are
dropped (and counted), never queued without limit. :func:`process_stream`
keeps the last ``window_len`` frames and runs the detector on them every
``predict_stride`` frames.

Example::

    from evad_mm.apis import EVADInferencer, open_capture, process_stream
    inferencer = EVADInferencer('configs/evad_toy_ava.py', 'best.pth')
    stats = process_stream(open_capture(0), inferencer, max_frames=300)
    print(stats.summary())
"""
import collections
import logging
import os.path as osp
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Deque, Optional, Union

import numpy as np
from mmengine.logging import print_log

__all__ = [
    'DROP_POLICIES', 'QUIT_KEYS', 'BoundedFrameQueue', 'FrameReader',
    'StreamStats', 'parse_source', 'open_capture', 'file_read_fps',
    'keep_rate_for_key', 'KeepRateKeys', 'process_stream'
]

DROP_POLICIES = ('oldest', 'newest')
QUIT_KEYS = (ord('q'), ord('Q'), 27)  # 27: Esc


class BoundedFrameQueue:
    """A thread-safe FIFO of at most ``maxsize`` items whose ``put`` never
    blocks: when it is full the oldest item (``drop='oldest'``, lowest
    latency) or the new one (``drop='newest'``) is dropped and counted.

    The producer calls :meth:`close` when it is done; :meth:`get` then
    returns the remaining items and ``None`` once the queue is drained.

    Args:
        maxsize (int): Capacity, >= 1.
        drop (str): 'oldest' or 'newest'. Defaults to 'oldest'.
    """

    def __init__(self, maxsize: int, drop: str = 'oldest') -> None:
        if maxsize < 1:
            raise ValueError(f'queue size must be >= 1, got {maxsize}')
        if drop not in DROP_POLICIES:
            raise ValueError(f'drop={drop!r}: choose one of {DROP_POLICIES}')
        self.maxsize = int(maxsize)
        self.drop = drop
        self.dropped = 0
        self.max_len = 0  # the most items ever held
        self._items: Deque[Any] = collections.deque()
        self._closed = False
        self._cond = threading.Condition()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, item: Any) -> bool:
        """Add ``item``; returns False if an item had to be dropped."""
        with self._cond:
            if self._closed:
                raise RuntimeError('put() on a closed BoundedFrameQueue')
            full = len(self._items) >= self.maxsize
            if full:
                self.dropped += 1
                if self.drop == 'newest':
                    return False
                self._items.popleft()
            self._items.append(item)
            self.max_len = max(self.max_len, len(self._items))
            self._cond.notify()
            return not full

    def get(self, timeout: Optional[float] = None) -> Any:
        """The oldest item; ``None`` when closed and drained.

        Raises:
            queue.Empty: Nothing arrived within ``timeout`` seconds.
        """
        with self._cond:
            if not self._cond.wait_for(
                    lambda: self._items or self._closed, timeout):
                raise queue.Empty
            return self._items.popleft() if self._items else None

    def close(self) -> None:
        """No more items will come."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class FrameReader(threading.Thread):
    """Reads frames from ``capture`` (anything with ``read() -> (ok,
    frame)``, e.g. ``cv2.VideoCapture``) into ``frames`` until the source
    ends, ``max_frames`` are read, ``duration`` seconds pass or
    :meth:`stop` is called; then closes the queue.

    Args:
        capture: The frame source.
        frames (BoundedFrameQueue): Where frames go.
        max_frames (int, optional): Stop after this many frames.
        duration (float, optional): Stop after this many seconds.
        read_fps (float, optional): Deliver at most this many frames per
            second (a video file played as a live stream); None or 0: as
            fast as the source gives them.
    """

    def __init__(self,
                 capture,
                 frames: BoundedFrameQueue,
                 max_frames: Optional[int] = None,
                 duration: Optional[float] = None,
                 read_fps: Optional[float] = None) -> None:
        super().__init__(name='FrameReader', daemon=True)
        self.capture = capture
        self.frames = frames
        self.max_frames = max_frames
        self.duration = duration
        self.read_fps = read_fps or None
        self.frames_read = 0
        self.error: Optional[BaseException] = None
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        start = time.monotonic()
        try:
            while not self._stop_event.is_set():
                if self.max_frames is not None and \
                        self.frames_read >= self.max_frames:
                    break
                if self.duration is not None and \
                        time.monotonic() - start >= self.duration:
                    break
                ok, frame = self.capture.read()
                if not ok or frame is None:
                    break
                self.frames_read += 1
                self.frames.put(frame)
                if self.read_fps:
                    due = start + self.frames_read / self.read_fps
                    self._stop_event.wait(max(0., due - time.monotonic()))
        except BaseException as err:  # reported by the consumer
            self.error = err
        finally:
            self.frames.close()


@dataclass
class StreamStats:
    """What :func:`process_stream` did."""
    frames_read: int = 0
    frames_dropped: int = 0
    frames_processed: int = 0
    predictions: int = 0
    inference_seconds: float = 0.
    max_queue_len: int = 0
    stopped_by_user: bool = False

    @property
    def mean_inference_fps(self) -> float:
        """Model calls per second of model time (0 without any)."""
        if not self.predictions or self.inference_seconds <= 0:
            return 0.
        return self.predictions / self.inference_seconds

    def summary(self) -> str:
        return (f'frames read: {self.frames_read}, dropped: '
                f'{self.frames_dropped}, processed: '
                f'{self.frames_processed}, predictions: {self.predictions}, '
                f'mean inference FPS: {self.mean_inference_fps:.2f}')


def parse_source(source: str) -> Union[int, str]:
    """A camera index (int) for a number, else the path or URL."""
    return int(source) if source.strip().isdigit() else source


def open_capture(source: Union[int, str]):
    """``cv2.VideoCapture`` of a camera index or a video file / URL.

    Raises:
        FileNotFoundError: A local file that does not exist.
        RuntimeError: The camera or video cannot be opened.
    """
    import cv2
    if isinstance(source, str) and '://' not in source and \
            not osp.exists(source):
        raise FileNotFoundError(f'video file not found: {source}')
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        what = f'camera {source}' if isinstance(source, int) else source
        raise RuntimeError(
            f'cannot open {what}'
            + (': is a camera connected, and is the index right?'
               if isinstance(source, int) else ': not a readable video'))
    return capture


def file_read_fps(source: Union[int, str], capture) -> Optional[float]:
    """The rate at which to read ``source`` to play it as a live stream: a
    local video file's own frame rate; None (as fast as frames come) for a
    camera or a URL, which pace themselves."""
    import cv2
    if isinstance(source, str) and osp.isfile(source):
        return float(capture.get(cv2.CAP_PROP_FPS) or 0.) or None
    return None


def keep_rate_for_key(key: int) -> Optional[float]:
    """Keys '1'..'9' give keep rates 0.1..0.9, '0' gives 1.0."""
    if ord('1') <= key <= ord('9'):
        return (key - ord('0')) / 10
    return 1.0 if key == ord('0') else None


class KeepRateKeys:
    """An ``on_key`` for :func:`process_stream`: keys '1'..'9' set the keep
    rate of ``inferencer`` to 0.1..0.9 and '0' to 1.0 (see
    :func:`keep_rate_for_key`). A model whose keep rate cannot change (an
    exported one, a backbone without pruning) is said so once, and the keys
    are off from then on.

    Args:
        inferencer (EVADInferencer): Whose ``set_keep_rate`` the keys call.
    """

    def __init__(self, inferencer) -> None:
        self.inferencer = inferencer
        self.enabled = True

    def __call__(self, key: int) -> None:
        rate = keep_rate_for_key(key)
        if rate is None or not self.enabled:
            return
        try:
            self.inferencer.set_keep_rate(rate)
        except ValueError as err:
            self.enabled = False
            print_log(f'keep-rate keys are off: {err}', logger='current',
                      level=logging.WARNING)


Render = Callable[[np.ndarray, Any, Optional[float]], np.ndarray]


def process_stream(capture,
                   inferencer,
                   *,
                   queue_size: int = 16,
                   drop: str = 'oldest',
                   predict_stride: int = 8,
                   max_frames: Optional[int] = None,
                   duration: Optional[float] = None,
                   read_fps: Optional[float] = None,
                   render: Optional[Render] = None,
                   on_frame: Optional[Callable[[np.ndarray], None]] = None,
                   show: Optional[Callable[[np.ndarray], int]] = None,
                   on_key: Optional[Callable[[int], None]] = None
                   ) -> StreamStats:
    """Read ``capture`` in a thread through a :class:`BoundedFrameQueue`
    and run ``inferencer`` on a sliding window of its frames.

    Args:
        capture: ``read() -> (ok, (H, W, 3) BGR frame)``, e.g. from
            :func:`open_capture`.
        inferencer: An :class:`EVADInferencer` (anything with
            ``window_len`` and ``predict_window(frames)``).
        queue_size (int): Frames the queue holds before dropping.
        drop (str): Which frame to drop when it is full.
        predict_stride (int): Run the model every this many processed
            frames (once the window is full).
        max_frames, duration, read_fps: see :class:`FrameReader`.
        render (callable, optional): ``render(frame, result, fps)`` draws
            the latest result (None before the first) and the last
            inference FPS (None before the first) on an (H, W, 3) RGB frame
            and returns it. Default: the frame as it is.
        on_frame (callable, optional): Gets every rendered RGB frame (e.g.
            a video writer's ``write``).
        show (callable, optional): Shows a rendered RGB frame and returns a
            key code (-1 for none); q or Esc stops.
        on_key (callable, optional): Gets every other key pressed.

    Returns:
        StreamStats: Frames read, dropped, processed; predictions and
        their time.
    """
    if predict_stride < 1:
        raise ValueError(f'predict_stride must be >= 1: {predict_stride}')
    frames = BoundedFrameQueue(queue_size, drop)
    reader = FrameReader(capture, frames, max_frames, duration, read_fps)
    window: Deque[np.ndarray] = collections.deque(
        maxlen=inferencer.window_len)
    stats = StreamStats()
    result, last_fps, since = None, None, predict_stride - 1
    reader.start()
    try:
        while True:
            try:
                frame = frames.get(timeout=0.5)
            except queue.Empty:
                continue
            if frame is None:
                break
            stats.frames_processed += 1
            rgb = np.ascontiguousarray(frame[..., ::-1])
            window.append(rgb)
            since += 1
            if len(window) == window.maxlen and since >= predict_stride:
                since = 0
                tic = time.perf_counter()
                result = inferencer.predict_window(window)
                elapsed = time.perf_counter() - tic
                stats.predictions += 1
                stats.inference_seconds += elapsed
                last_fps = 1. / max(elapsed, 1e-9)
            drawn = rgb if render is None else render(rgb, result, last_fps)
            if on_frame is not None:
                on_frame(drawn)
            if show is not None:
                key = show(drawn)
                if key in QUIT_KEYS:
                    stats.stopped_by_user = True
                    break
                if key is not None and key >= 0 and on_key is not None:
                    on_key(key)
    except KeyboardInterrupt:
        stats.stopped_by_user = True
    finally:
        reader.stop()
        reader.join(timeout=5)
        stats.frames_read = reader.frames_read
        stats.frames_dropped = frames.dropped
        stats.max_queue_len = frames.max_len
    if reader.error is not None:
        raise RuntimeError(f'reading frames failed: {reader.error}') \
            from reader.error
    return stats
