"""EVAD live action detection on a camera or a video stream.

A reader thread pushes frames into a bounded queue: when the detector falls
behind, frames are dropped (and counted), never queued without limit. The
main thread keeps a sliding window of the last ``clip_len *
frame_interval`` frames (the config's test ``SampleAVAFrames``), runs EVAD
on it every ``--predict-stride`` frames (the keyframe is the window's
middle frame, as at test time) and draws the latest actors, their top
actions, the measured inference FPS and the backbone keep rate on every
frame (see :func:`evad_mm.apis.process_stream`).

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
import os.path as osp
import sys
from typing import Optional, Sequence

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, REPO)

from evad_mm.apis import cli, stream  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='EVAD live action detection on a camera or a video: a '
        'bounded frame queue, a sliding clip window, boxes and actions '
        'drawn with the inference FPS and the keep rate.')
    parser.add_argument(
        'source', help='camera index (e.g. 0) or video file / stream URL')
    parser.add_argument('config', help=cli.MODEL_HELP)
    parser.add_argument(
        '--checkpoint', default=None,
        help='checkpoint file or URL (without one: random weights)')
    parser.add_argument(
        '--keep-rate', type=float, nargs='+', default=None,
        help='override the backbone keep rate (one value or one per '
        'pruning layer), e.g. to compare 1.0 with 0.7 live')
    cli.add_inference_args(parser)
    parser.add_argument(
        '--predict-stride', type=int, default=8,
        help='run the model every this many processed frames')
    parser.add_argument(
        '--queue-size', type=int, default=16,
        help='frames the reader may queue; when full, frames are dropped')
    parser.add_argument(
        '--drop', choices=stream.DROP_POLICIES, default='oldest',
        help='which frame to drop when the queue is full')
    parser.add_argument(
        '--read-fps', type=float, default=None,
        help='frames read per second (default: a video file\'s frame rate, '
        'as a camera would deliver them; a camera paces itself; 0: as fast '
        'as possible)')
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
    args = parser.parse_args(argv)
    cli.require_positive(parser, args, ('predict_stride', 'queue_size',
                                        'max_labels', 'max_frames'))
    if args.duration is not None and args.duration <= 0:
        parser.error('--duration must be > 0')
    if args.read_fps is not None and args.read_fps < 0:
        parser.error('--read-fps must be >= 0')
    return args


def build(args: argparse.Namespace):
    """The inferencer of ``args``, with ``--keep-rate`` applied."""
    inferencer = cli.build_inferencer(args)
    if args.keep_rate is not None:
        inferencer.set_keep_rate(args.keep_rate)
    return inferencer


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    problem = cli.check_model(args.config, args.checkpoint)
    if problem:
        return cli.print_error(problem)
    import cv2

    from evad_mm.apis import Mp4Writer
    from evad_mm.visualization import LiveWindow, display_available
    source = stream.parse_source(args.source)
    try:
        capture = stream.open_capture(source)
    except (FileNotFoundError, RuntimeError) as err:
        return cli.print_error(str(err))
    window = writer = None
    try:
        try:
            inferencer = build(args)
        except (FileNotFoundError, ValueError, ImportError) as err:
            return cli.print_error(str(err))
        vis = inferencer.visualizer
        read_fps = stream.file_read_fps(source, capture) \
            if args.read_fps is None else args.read_fps
        print(f'window {inferencer.window_len} frames (clip_len '
              f'{inferencer.clip_len} x frame_interval '
              f'{inferencer.frame_interval}), a prediction every '
              f'{args.predict_stride} frames, '
              f'{vis.keep_rate_text(inferencer.keep_rate)}', file=sys.stderr)
        if not args.no_show and display_available():
            window = LiveWindow('EVAD')
        elif not args.no_show:
            print('no display found: running headless (--no-show)',
                  file=sys.stderr)

        def render(frame, result, fps):
            status = vis.status_text(fps, inferencer.keep_rate)
            return vis.draw_result(frame, result, status)

        if args.out:
            source_fps = capture.get(cv2.CAP_PROP_FPS) or 30.
            writer = Mp4Writer(args.out, args.output_fps or source_fps)
        try:
            stats = stream.process_stream(
                capture, inferencer, queue_size=args.queue_size,
                drop=args.drop, predict_stride=args.predict_stride,
                max_frames=args.max_frames, duration=args.duration,
                read_fps=read_fps, render=render,
                on_frame=writer.write if writer else None, show=window,
                on_key=stream.KeepRateKeys(inferencer))
            if writer is not None:
                writer.close()  # checks the file
        except (RuntimeError, ValueError) as err:
            return cli.print_error(str(err))
    finally:
        capture.release()
        if writer is not None:
            writer.release()
        if window is not None:
            window.close()
    if writer is not None:
        if not writer.frames_written:
            return cli.print_error('no frames processed: nothing written '
                                   f'to {args.out}')
        print(f'Wrote {writer.frames_written} frames to {args.out}',
              file=sys.stderr)
    print(stats.summary())
    return 0


if __name__ == '__main__':
    sys.exit(main())
