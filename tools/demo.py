"""EVAD spatio-temporal action detection demo: video in, annotated mp4 out.

EVAD finds the actors itself: no person detector, no proposals. Keyframes
are taken every ``--predict-stepsize`` frames; each keyframe's boxes and top
action labels are drawn on the ``--predict-stepsize`` frames around it (as
mmaction2's ``demo/demo_spatiotemporal_det.py`` does).

Example::

    python tools/demo.py demo.mp4 configs/evad_toy_ava.py best.pth \\
        --out demo_out.mp4 --score-thr 0.4 --end 2

Exits with status 1 and a message naming the path when the video is
missing, cannot be decoded or has no frames.
"""
import argparse
import os
import os.path as osp
import sys
import time
from typing import List, Optional, Sequence

import numpy as np

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, REPO)

# BGR colours, one per actor (cycled)
PALETTE = [(0, 255, 0), (255, 128, 0), (0, 128, 255), (255, 0, 255),
           (0, 255, 255), (255, 255, 0), (128, 0, 255), (0, 0, 255)]


def require_positive(parser: argparse.ArgumentParser,
                     args: argparse.Namespace, names: Sequence[str]) -> None:
    """Exit with a usage error naming the first option of ``names`` below 1
    (shared with ``tools/webcam_demo.py``)."""
    for name in names:
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1')


def add_drawing_args(parser: argparse.ArgumentParser) -> None:
    """Options of what is drawn: class names, thresholds, labels per
    actor (shared with ``tools/webcam_demo.py``)."""
    parser.add_argument(
        '--label-map', default=None,
        help='class names: mmaction2 label map (`id: name` lines) or '
        'pbtxt; default: the config\'s `classes`, else class_<id>')
    parser.add_argument('--score-thr', type=float, default=0.4,
                        help='action score threshold for drawn labels')
    parser.add_argument(
        '--actor-thr', type=float, default=None,
        help='draw actors whose person score reaches this (default: the '
        "config's model.roi_head.test_cfg.score_thr; the model itself keeps "
        'all its boxes when none reaches it)')
    parser.add_argument('--max-labels', type=int, default=3,
                        help='at most this many labels per actor')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='EVAD spatio-temporal action detection demo: draws each '
        "keyframe's actors and actions on the frames around it.")
    parser.add_argument('video', help='input video file')
    parser.add_argument('config', help='EVAD config file')
    parser.add_argument(
        'checkpoint', nargs='?', default=None,
        help='checkpoint file or URL (without one: random weights)')
    parser.add_argument('--out', required=True, help='output .mp4 file')
    add_drawing_args(parser)
    parser.add_argument('--predict-stepsize', type=int, default=8,
                        help='frames between keyframes')
    parser.add_argument(
        '--output-stepsize', type=int, default=1,
        help='write one frame out of this many (mmaction2 demo: 4)')
    parser.add_argument(
        '--output-fps', type=float, default=None,
        help='frame rate of the output (default: the video\'s divided by '
        '--output-stepsize, i.e. real time)')
    parser.add_argument(
        '--short-side', type=int, default=None,
        help='resize frames to this short side for the model (default: '
        'the config\'s test Resize)')
    parser.add_argument(
        '--frame-interval', type=int, default=None,
        help='frames between clip frames (default: the config\'s '
        'SampleAVAFrames)')
    parser.add_argument('--start', type=float, default=0.,
                        help='start time in seconds')
    parser.add_argument('--end', type=float, default=None,
                        help='end time in seconds (default: the end)')
    parser.add_argument('--batch-size', type=int, default=None,
                        help='keyframes per forward pass (default: auto)')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    parser.add_argument(
        '--cfg-options', nargs='+', default=None, metavar='KEY=VALUE',
        help='config overrides, e.g. model.backbone.keep_rate=0.6')
    args = parser.parse_args(argv)
    require_positive(parser, args,
                     ('predict_stepsize', 'output_stepsize', 'max_labels'))
    return args


def _cfg_options(options: Optional[List[str]]) -> Optional[dict]:
    if not options:
        return None
    from mmengine.config import DictAction
    namespace = argparse.Namespace()
    DictAction(option_strings=[], dest='cfg')(None, namespace, options)
    return namespace.cfg


def draw_result(frame: np.ndarray, result, score_thr: float = 0.,
                max_labels: int = 3, actor_thr: float = 0.) -> np.ndarray:
    """Draw one keyframe's actors (person score >= ``actor_thr``) and their
    top labels (score >= ``score_thr``) on a BGR frame (a copy)."""
    import cv2
    frame = np.ascontiguousarray(frame).copy()
    h, w = frame.shape[:2]
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = max(0.3, min(h, w) / 640.)
    thickness = 1 if min(h, w) < 480 else 2
    for i, box in enumerate(result.bboxes):
        if result.actor_scores[i] < actor_thr:
            continue
        # the result's boxes are in pixels of the original frame; this frame
        # may be another size only if the caller resized it
        sx = w / result.image_shape[1]
        sy = h / result.image_shape[0]
        x1, y1, x2, y2 = (box * [sx, sy, sx, sy]).round().astype(int)
        color = PALETTE[i % len(PALETTE)]
        cv2.rectangle(frame, (x1, y1), (x2, y2), color, thickness)
        lines = [
            f'{name} {score:.2f}' for name, score in zip(
                result.labels[i], result.label_scores[i])
            if score >= score_thr
        ][:max_labels]
        y = max(y1, 0)
        for text in lines:
            (tw, th), base = cv2.getTextSize(text, font, scale, 1)
            x = min(max(x1, 0), max(w - tw - 2, 0))
            cv2.rectangle(frame, (x, y), (x + tw + 2, y + th + base + 2),
                          color, -1)
            cv2.putText(frame, text, (x + 1, y + th + 1), font, scale,
                        (0, 0, 0), 1, cv2.LINE_AA)
            y += th + base + 2
    return frame


def nearest_keyframe(frame_indices: np.ndarray,
                     keyframes: Sequence[int]) -> np.ndarray:
    """Position in ``keyframes`` (sorted) of the keyframe nearest to each
    frame; halfway frames go to the later keyframe, so that with
    :func:`default_keyframes` each keyframe covers its own
    ``predict_stepsize`` frames."""
    keyframes = np.asarray(keyframes)
    frame_indices = np.asarray(frame_indices)
    if len(keyframes) == 1:
        return np.zeros(len(frame_indices), dtype=np.int64)
    pos = np.clip(np.searchsorted(keyframes, frame_indices), 1,
                  len(keyframes) - 1)
    left, right = keyframes[pos - 1], keyframes[pos]
    return np.where(frame_indices - left < right - frame_indices, pos - 1,
                    pos)


def _check_output(path: str, expected_frames: int, size) -> int:
    """The written file must be non-empty and decode back; returns its
    frame count."""
    import cv2
    if not osp.isfile(path) or osp.getsize(path) == 0:
        raise RuntimeError(f'cv2.VideoWriter wrote nothing to {path}')
    cap = cv2.VideoCapture(path)
    try:
        ok, frame = cap.read()
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()
    if not ok or frame is None:
        raise RuntimeError(f'{path} was written but cannot be read back')
    if frame.shape[1::-1] != tuple(size):
        raise RuntimeError(f'{path} has frames of {frame.shape[1::-1]}, '
                           f'expected {tuple(size)}')
    if count and count != expected_frames:
        print(f'warning: {path} reads back {count} frames, '
              f'{expected_frames} were written', file=sys.stderr)
    return count


def _error(message: str) -> int:
    print(f'error: {message}', file=sys.stderr)
    return 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    # fail fast (before importing torch) on a missing input
    if not osp.exists(args.video):
        return _error(f'video file not found: {args.video}')
    if not osp.isfile(args.config):
        return _error(f'config file not found: {args.config}')

    import cv2

    from evad_mm.apis import (VideoReadError, default_keyframes,
                              detect_video, get_label_names, init_detector,
                              load_video)
    from evad_mm.apis.inference import progress_bar
    tic = time.time()
    try:
        video = load_video(args.video)
    except (FileNotFoundError, VideoReadError) as err:
        return _error(str(err))
    fps = video.fps or 30.
    start = max(int(round(args.start * fps)), 0)
    end = len(video) if args.end is None else min(
        int(round(args.end * fps)), len(video))
    if end <= start:
        return _error(f'no frames of {args.video} ({len(video)} frames at '
                      f'{fps:.3g} fps) between {args.start} s and '
                      f'{args.end} s')

    if args.checkpoint is None:
        print('\n' + '!' * 72 + '\n!! WARNING: no checkpoint given: running '
              'EVAD with RANDOM WEIGHTS.\n!! The boxes and labels drawn are '
              'meaningless; pass a trained CHECKPOINT.\n' + '!' * 72 + '\n',
              file=sys.stderr)
    model = init_detector(args.config, args.checkpoint, device=args.device,
                          cfg_options=_cfg_options(args.cfg_options))
    actor_thr = args.actor_thr
    if actor_thr is None:
        test_cfg = model.cfg.model.get('roi_head', {}).get('test_cfg') or {}
        actor_thr = float(test_cfg.get('score_thr', 0.))
    keyframes = default_keyframes(len(video), args.predict_stepsize, start,
                                  end)
    try:
        label_names = get_label_names(model, args.label_map)
    except (FileNotFoundError, ValueError) as err:
        return _error(str(err))
    try:
        results = detect_video(
            model,
            video,
            keyframes=keyframes,
            score_thr=args.score_thr,
            short_side=args.short_side,
            label_map=label_names,
            frame_interval=args.frame_interval,
            batch_size=args.batch_size,
            progress=True)
    except VideoReadError as err:
        return _error(str(err))

    out_indices = np.arange(start, end, args.output_stepsize)
    which = nearest_keyframe(out_indices, keyframes)
    out_fps = args.output_fps or fps / args.output_stepsize
    out_dir = osp.dirname(osp.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    size = (video.width, video.height)
    writer = cv2.VideoWriter(args.out, cv2.VideoWriter_fourcc(*'mp4v'),
                             out_fps, size)
    if not writer.isOpened():
        return _error(f'cannot open {args.out} for writing (mp4v)')
    bar = progress_bar(len(out_indices), 'render', 'frame')
    try:
        for s in range(0, len(out_indices), 64):
            chunk = out_indices[s:s + 64]
            try:
                frames = video.get_batch(chunk)
            except VideoReadError as err:
                return _error(str(err))
            for frame, r in zip(frames, which[s:s + 64]):
                writer.write(
                    draw_result(frame[..., ::-1], results[r], args.score_thr,
                                args.max_labels, actor_thr))
            bar.update(len(chunk))
    finally:
        writer.release()
        if hasattr(bar, 'close'):
            bar.close()
    try:
        _check_output(args.out, len(out_indices), size)
    except RuntimeError as err:
        return _error(str(err))
    detections = sum(int((r.actor_scores >= actor_thr).sum())
                     for r in results)
    print(f'Wrote {len(out_indices)} frames ({size[0]}x{size[1]}, '
          f'{out_fps:.3g} fps) to {args.out}: {len(results)} keyframes, '
          f'{detections} actors drawn (person score >= {actor_thr:g}), '
          f'{time.time() - tic:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
