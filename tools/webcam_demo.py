"""EVAD live action detection on a camera or a video stream.

A reader thread pushes frames into a bounded queue: when the detector falls
behind, frames are dropped (and counted), never queued without limit. The
main thread keeps a sliding window of the last ``clip_len *
frame_interval`` frames (the config's test ``SampleAVAFrames``), runs EVAD
on it every ``--predict-stride`` frames (the keyframe is the window's
middle frame, as at test time) and draws the latest actors, their top
actions, the measured inference FPS and the backbone keep rate on every
frame.

Examples::

    # camera 0, a window on screen; keys: q / Esc quit, 1-9 keep rate
    # 0.1-0.9, 0 keep rate 1.0
    python tools/webcam_demo.py 0 configs/evad_vitb_ava.py \\
        --checkpoint evad_vitb_ava.pth --label-map label_map.txt
    # a video file played as a live stream, headless, written to a file
    python tools/webcam_demo.py video.mp4 configs/evad_toy_ava.py \\
        --checkpoint best.pth --no-show --out out.mp4 --max-frames 300

The last line printed gives the frames read, dropped and processed, the
predictions made and the mean inference FPS (model calls per second of
model time).
"""
import argparse
import collections
import importlib.util
import logging
import os
import os.path as osp
import queue
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Deque, Optional, Sequence

import numpy as np

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, REPO)

DROP_POLICIES = ('oldest', 'newest')
QUIT_KEYS = (ord('q'), ord('Q'), 27)  # 27: Esc


def _load_demo():
    """``tools/demo.py`` (drawing and output checks), loaded by path."""
    path = osp.join(osp.dirname(osp.abspath(__file__)), 'demo.py')
    spec = importlib.util.spec_from_file_location('evad_video_demo', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


video_demo = _load_demo()


# ---------------------------------------------------------------- queue ---


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


# ------------------------------------------------------------- detector ---


@contextmanager
def _quiet_info():
    """Mute the current MMLogger's INFO lines (e.g. a label-map note
    repeated on every prediction)."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def keep_rate_text(model) -> str:
    """The backbone's keep rate for display, e.g. 'rho 0.7'."""
    rates = getattr(getattr(model, 'backbone', None), 'keep_rate', None)
    if rates is None:
        return 'rho -'
    rates = tuple(rates) if isinstance(rates, (tuple, list)) else (rates, )
    if len(set(rates)) == 1:
        return f'rho {rates[0]:g}'
    return 'rho ' + '/'.join(f'{r:g}' for r in rates)


def set_keep_rate(model, keep_rate) -> None:
    """Set ``model.backbone.keep_rate`` (one rate or one per pruning layer)
    on a built model; takes effect at the next forward pass.

    Raises:
        ValueError: The backbone does not prune tokens (has no
            ``keep_rate``), or a rate is outside (0, 1].
    """
    backbone = getattr(model, 'backbone', None)
    if not isinstance(getattr(type(backbone), 'keep_rate', None), property):
        raise ValueError(
            f'--keep-rate needs a backbone with token pruning (EVADViT); '
            f'{type(backbone).__name__} has no keep_rate. Drop --keep-rate '
            'for this config.')
    if isinstance(keep_rate, (list, tuple)) and len(keep_rate) == 1:
        keep_rate = keep_rate[0]
    backbone.keep_rate = keep_rate


class StreamingDetector:
    """EVAD on a sliding window of a stream's frames.

    The window holds the last ``clip_len * frame_interval`` frames; a
    prediction is the clip the config's test ``SampleAVAFrames`` takes
    around the window's middle frame (``(clip_len // 2) * frame_interval``),
    run through :func:`evad_mm.apis.detect_video`.

    Args:
        model (nn.Module): From :func:`evad_mm.apis.init_detector`.
        score_thr (float): Action score threshold of the labels.
        label_map: Class names, see :func:`evad_mm.apis.get_label_names`.
        short_side (int, optional): Resize frames to this short side
            instead of the config's test ``Resize``.
        frame_interval (int, optional): Override the config's.
    """

    def __init__(self,
                 model,
                 score_thr: float = 0.4,
                 label_map=None,
                 short_side: Optional[int] = None,
                 frame_interval: Optional[int] = None) -> None:
        from evad_mm.apis import get_label_names
        from evad_mm.apis import inference_pipeline
        self.model = model
        self.score_thr = score_thr
        self.short_side = short_side
        self.label_names = get_label_names(model, label_map)
        self.clip_len, cfg_interval, _ = inference_pipeline(
            model.cfg, short_side)
        self.frame_interval = int(frame_interval or cfg_interval)
        if self.frame_interval < 1:
            raise ValueError(
                f'frame_interval must be >= 1: {self.frame_interval}')
        self.window_len = self.clip_len * self.frame_interval
        self.keyframe = (self.clip_len // 2) * self.frame_interval
        self.window: Deque[np.ndarray] = collections.deque(
            maxlen=self.window_len)

    @property
    def ready(self) -> bool:
        """The window is full."""
        return len(self.window) == self.window_len

    def push(self, frame_rgb: np.ndarray) -> None:
        """Append an (H, W, 3) RGB frame (the oldest leaves the window)."""
        self.window.append(frame_rgb)

    def keep_rate_text(self) -> str:
        return keep_rate_text(self.model)

    def predict(self):
        """Actors of the window's keyframe: a :class:`KeyframeResult`."""
        from evad_mm.apis import detect_video
        if not self.ready:
            raise RuntimeError(f'the window holds {len(self.window)} of '
                               f'{self.window_len} frames')
        with _quiet_info():
            return detect_video(
                self.model,
                list(self.window),
                keyframes=[self.keyframe],
                score_thr=self.score_thr,
                short_side=self.short_side,
                label_map=self.label_names,
                frame_interval=self.frame_interval,
                batch_size=1)[0]


# --------------------------------------------------------------- stream ---


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


def draw_overlay(frame: np.ndarray,
                 result,
                 inference_fps: Optional[float],
                 keep_rate: str,
                 score_thr: float = 0.,
                 max_labels: int = 3,
                 actor_thr: float = 0.) -> np.ndarray:
    """A copy of the BGR ``frame`` with ``result``'s actors and labels (if
    any) and a status line: inference FPS and keep rate."""
    import cv2
    if result is not None:
        frame = video_demo.draw_result(frame, result, score_thr, max_labels,
                                       actor_thr)
    else:
        frame = np.ascontiguousarray(frame).copy()
    h, w = frame.shape[:2]
    fps = '-' if not inference_fps else f'{inference_fps:.2f}'
    text = f'inference FPS {fps}  {keep_rate}'
    scale = max(0.3, min(h, w) / 640.)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale,
                                     1)
    y0 = max(h - th - base - 4, 0)
    cv2.rectangle(frame, (0, y0), (min(tw + 4, w - 1), h - 1), (0, 0, 0),
                  -1)
    cv2.putText(frame, text, (2, h - base - 2), cv2.FONT_HERSHEY_SIMPLEX,
                scale, (255, 255, 255), 1, cv2.LINE_AA)
    return frame


def keep_rate_for_key(key: int) -> Optional[float]:
    """Keys '1'..'9' give keep rates 0.1..0.9, '0' gives 1.0."""
    if ord('1') <= key <= ord('9'):
        return (key - ord('0')) / 10
    if key == ord('0'):
        return 1.0
    return None


def process_stream(capture,
                   detector,
                   *,
                   queue_size: int = 16,
                   drop: str = 'oldest',
                   predict_stride: int = 8,
                   max_frames: Optional[int] = None,
                   duration: Optional[float] = None,
                   read_fps: Optional[float] = None,
                   score_thr: float = 0.,
                   actor_thr: float = 0.,
                   max_labels: int = 3,
                   on_frame: Optional[Callable[[np.ndarray], None]] = None,
                   show: Optional[Callable[[np.ndarray], int]] = None,
                   on_key: Optional[Callable[[int], None]] = None
                   ) -> StreamStats:
    """Read ``capture`` in a thread through a :class:`BoundedFrameQueue`
    and run ``detector`` on the stream.

    Args:
        capture: ``read() -> (ok, (H, W, 3) BGR frame)``.
        detector: A :class:`StreamingDetector` (or anything with ``push``,
            ``ready``, ``predict`` and ``keep_rate_text``).
        queue_size (int): Frames the queue holds before dropping.
        drop (str): Which frame to drop when it is full.
        predict_stride (int): Run the model every this many processed
            frames (once the window is full).
        max_frames, duration, read_fps: see :class:`FrameReader`.
        score_thr, actor_thr, max_labels: what is drawn.
        on_frame (callable, optional): Gets every drawn BGR frame (e.g. a
            video writer's ``write``).
        show (callable, optional): Shows a drawn frame and returns a key
            code (-1 for none); q or Esc stops.
        on_key (callable, optional): Gets every other key pressed.

    Returns:
        StreamStats: Frames read, dropped, processed; predictions and
        their time.
    """
    if predict_stride < 1:
        raise ValueError(f'predict_stride must be >= 1: {predict_stride}')
    frames = BoundedFrameQueue(queue_size, drop)
    reader = FrameReader(capture, frames, max_frames, duration, read_fps)
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
            detector.push(np.ascontiguousarray(frame[..., ::-1]))
            since += 1
            if detector.ready and since >= predict_stride:
                since = 0
                tic = time.perf_counter()
                result = detector.predict()
                elapsed = time.perf_counter() - tic
                stats.predictions += 1
                stats.inference_seconds += elapsed
                last_fps = 1. / max(elapsed, 1e-9)
            drawn = draw_overlay(frame, result, last_fps,
                                 detector.keep_rate_text(), score_thr,
                                 max_labels, actor_thr)
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


# ------------------------------------------------------------------ CLI ---


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='EVAD live action detection on a camera or a video: a '
        'bounded frame queue, a sliding clip window, boxes and actions '
        'drawn with the inference FPS and the keep rate.')
    parser.add_argument(
        'source', help='camera index (e.g. 0) or video file / stream URL')
    parser.add_argument('config', help='EVAD config file')
    parser.add_argument(
        '--checkpoint', default=None,
        help='checkpoint file or URL (without one: random weights)')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    parser.add_argument(
        '--keep-rate', type=float, nargs='+', default=None,
        help='override the backbone keep rate (one value or one per '
        'pruning layer), e.g. to compare 1.0 with 0.7 live')
    video_demo.add_drawing_args(parser)
    parser.add_argument(
        '--predict-stride', type=int, default=8,
        help='run the model every this many processed frames')
    parser.add_argument(
        '--queue-size', type=int, default=16,
        help='frames the reader may queue; when full, frames are dropped')
    parser.add_argument('--drop', choices=DROP_POLICIES, default='oldest',
                        help='which frame to drop when the queue is full')
    parser.add_argument(
        '--read-fps', type=float, default=None,
        help='frames read per second (default: a video file\'s frame rate, '
        'as a camera would deliver them; a camera paces itself; 0: as fast '
        'as possible)')
    parser.add_argument('--short-side', type=int, default=None,
                        help='resize frames to this short side for the '
                        'model (default: the config\'s test Resize)')
    parser.add_argument('--frame-interval', type=int, default=None,
                        help='frames between clip frames (default: the '
                        'config\'s SampleAVAFrames)')
    parser.add_argument('--out', default=None,
                        help='write the drawn frames to this .mp4 file')
    parser.add_argument('--output-fps', type=float, default=None,
                        help='frame rate of --out (default: the source\'s, '
                        'else 30)')
    parser.add_argument('--no-show', action='store_true',
                        help='no window (also automatic without a display)')
    parser.add_argument('--max-frames', type=int, default=None,
                        help='stop after reading this many frames')
    parser.add_argument('--duration', type=float, default=None,
                        help='stop after this many seconds')
    parser.add_argument(
        '--cfg-options', nargs='+', default=None, metavar='KEY=VALUE',
        help='config overrides, e.g. model.action_head.num_classes=16')
    args = parser.parse_args(argv)
    video_demo.require_positive(parser, args,
                                ('predict_stride', 'queue_size', 'max_labels'))
    if args.max_frames is not None and args.max_frames < 1:
        parser.error('--max-frames must be >= 1')
    if args.duration is not None and args.duration <= 0:
        parser.error('--duration must be > 0')
    if args.read_fps is not None and args.read_fps < 0:
        parser.error('--read-fps must be >= 0')
    return args


def parse_source(source: str):
    """A camera index (int) for a number, else the path or URL."""
    return int(source) if source.strip().isdigit() else source


def display_available() -> bool:
    """Whether cv2.imshow can open a window."""
    if sys.platform.startswith('linux'):
        return bool(os.environ.get('DISPLAY')
                    or os.environ.get('WAYLAND_DISPLAY'))
    return True


def open_capture(source):
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


def build_model(args: argparse.Namespace):
    """The detector of ``args``, with ``--keep-rate`` applied."""
    from evad_mm.apis import init_detector
    model = init_detector(args.config, args.checkpoint, device=args.device,
                          cfg_options=video_demo._cfg_options(
                              args.cfg_options))
    if args.keep_rate is not None:
        set_keep_rate(model, args.keep_rate)
    return model


class _Display:
    """cv2.imshow that turns itself off if the build has no GUI."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.enabled = True

    def __call__(self, frame: np.ndarray) -> int:
        import cv2
        if not self.enabled:
            return -1
        try:
            cv2.imshow(self.title, frame)
            key = cv2.waitKey(1)
            return -1 if key < 0 else key & 0xFF
        except cv2.error as err:
            self.enabled = False
            print(f'warning: cannot show frames ({str(err).strip()}); '
                  'continuing without a window', file=sys.stderr)
            return -1

    def close(self) -> None:
        if self.enabled:
            import cv2
            try:
                cv2.destroyWindow(self.title)
            except cv2.error:
                pass


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if not osp.isfile(args.config):
        return video_demo._error(f'config file not found: {args.config}')
    source = parse_source(args.source)
    import cv2
    try:
        capture = open_capture(source)
    except (FileNotFoundError, RuntimeError) as err:
        return video_demo._error(str(err))
    writer = display = None
    try:
        try:
            model = build_model(args)
            detector = StreamingDetector(
                model, args.score_thr, args.label_map, args.short_side,
                args.frame_interval)
        except (FileNotFoundError, ValueError) as err:
            return video_demo._error(str(err))
        actor_thr = args.actor_thr
        if actor_thr is None:
            test_cfg = model.cfg.model.get('roi_head', {}).get(
                'test_cfg') or {}
            actor_thr = float(test_cfg.get('score_thr', 0.))
        source_fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.)
        read_fps = args.read_fps
        if read_fps is None and isinstance(source, str) and \
                osp.isfile(source):
            read_fps = source_fps or None
        print(f'window {detector.window_len} frames (clip_len '
              f'{detector.clip_len} x frame_interval '
              f'{detector.frame_interval}), a prediction every '
              f'{args.predict_stride} frames, '
              f'{detector.keep_rate_text()}', file=sys.stderr)

        written = [0]
        out_size = [None]

        def write(frame: np.ndarray) -> None:
            nonlocal writer
            if writer is None:
                out_dir = osp.dirname(osp.abspath(args.out))
                os.makedirs(out_dir, exist_ok=True)
                out_size[0] = (frame.shape[1], frame.shape[0])
                writer = cv2.VideoWriter(
                    args.out, cv2.VideoWriter_fourcc(*'mp4v'),
                    args.output_fps or source_fps or 30., out_size[0])
                if not writer.isOpened():
                    raise RuntimeError(
                        f'cannot open {args.out} for writing (mp4v)')
            writer.write(frame)
            written[0] += 1

        show = None
        if not args.no_show:
            if display_available():
                display = _Display('EVAD')
                show = display
            else:
                print('no display found: running headless (--no-show)',
                      file=sys.stderr)

        def on_key(key: int) -> None:
            rate = keep_rate_for_key(key)
            if rate is not None and hasattr(model, 'backbone') and \
                    hasattr(model.backbone, 'keep_rate'):
                set_keep_rate(model, rate)

        try:
            stats = process_stream(
                capture,
                detector,
                queue_size=args.queue_size,
                drop=args.drop,
                predict_stride=args.predict_stride,
                max_frames=args.max_frames,
                duration=args.duration,
                read_fps=read_fps,
                score_thr=args.score_thr,
                actor_thr=actor_thr,
                max_labels=args.max_labels,
                on_frame=write if args.out else None,
                show=show,
                on_key=on_key)
        except RuntimeError as err:
            return video_demo._error(str(err))
    finally:
        capture.release()
        if writer is not None:
            writer.release()
        if display is not None:
            display.close()
    if args.out:
        if not written[0]:
            return video_demo._error(f'no frames processed: nothing written '
                                     f'to {args.out}')
        try:
            video_demo._check_output(args.out, written[0], out_size[0])
        except RuntimeError as err:
            return video_demo._error(str(err))
        print(f'Wrote {written[0]} frames to {args.out}', file=sys.stderr)
    print(stats.summary())
    return 0


if __name__ == '__main__':
    sys.exit(main())
