"""EVAD spatio-temporal action detection demo: video in, annotated mp4 out.

EVAD finds the actors itself: no person detector, no proposals. Keyframes
are taken every ``--predict-stepsize`` frames; each keyframe's boxes and top
action labels are drawn on the ``--predict-stepsize`` frames around it (as
mmaction2's ``demo/demo_spatiotemporal_det.py`` does).

Example::

    python tools/demo.py demo.mp4 configs/evad_toy_ava.py best.pth \\
        --out demo_out.mp4 --score-thr 0.4 --end 2
    python tools/demo.py demo.mp4 evad_toy_ava.onnx --out demo_out.mp4

Exits with status 1 and a message naming the path when the video is
missing, cannot be decoded or has no frames.
"""
import argparse
import os.path as osp
import sys
import time
from typing import Optional, Sequence

import numpy as np

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, REPO)

from evad_mm.apis.cli import (MODEL_HELP, add_inference_args,  # noqa: E402
                              build_inferencer, check_inputs, print_error,
                              require_positive)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='EVAD spatio-temporal action detection demo: draws each '
        "keyframe's actors and actions on the frames around it.")
    parser.add_argument('video', help='input video file')
    parser.add_argument('config', help=MODEL_HELP)
    parser.add_argument(
        'checkpoint', nargs='?', default=None,
        help='checkpoint file or URL (without one: random weights)')
    parser.add_argument('--out', required=True, help='output .mp4 file')
    add_inference_args(parser)
    parser.add_argument('--predict-stepsize', type=int, default=8,
                        help='frames between keyframes')
    parser.add_argument(
        '--output-stepsize', type=int, default=1,
        help='write one frame out of this many (mmaction2 demo: 4)')
    parser.add_argument(
        '--output-fps', type=float, default=None,
        help='frame rate of the output (default: the video\'s divided by '
        '--output-stepsize, i.e. real time)')
    parser.add_argument('--start', type=float, default=0.,
                        help='start time in seconds')
    parser.add_argument('--end', type=float, default=None,
                        help='end time in seconds (default: the end)')
    parser.add_argument('--batch-size', type=int, default=None,
                        help='keyframes per forward pass (default: auto)')
    args = parser.parse_args(argv)
    require_positive(parser, args,
                     ('predict_stepsize', 'output_stepsize', 'max_labels'))
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    # fail fast (before importing torch) on a missing input
    problem = check_inputs(args.video, args.config, args.checkpoint)
    if problem:
        return print_error(problem)

    from evad_mm.apis import (Mp4Writer, VideoReadError, default_keyframes,
                              is_exported_model, load_video, nearest_keyframe)
    from evad_mm.apis.inferencer import progress_bar
    tic = time.time()
    try:
        video = load_video(args.video)
    except (FileNotFoundError, VideoReadError) as err:
        return print_error(str(err))
    fps = video.fps or 30.
    start = max(int(round(args.start * fps)), 0)
    end = len(video) if args.end is None else min(
        int(round(args.end * fps)), len(video))
    if end <= start:
        return print_error(f'no frames of {args.video} ({len(video)} frames '
                           f'at {fps:.3g} fps) between {args.start} s and '
                           f'{args.end} s')

    if args.checkpoint is None and not is_exported_model(args.config):
        print('\n' + '!' * 72 + '\n!! WARNING: no checkpoint given: running '
              'EVAD with RANDOM WEIGHTS.\n!! The boxes and labels drawn are '
              'meaningless; pass a trained CHECKPOINT.\n' + '!' * 72 + '\n',
              file=sys.stderr)
    try:
        inferencer = build_inferencer(args, show_progress=True)
    except (FileNotFoundError, ValueError, ImportError) as err:
        return print_error(str(err))
    keyframes = default_keyframes(len(video), args.predict_stepsize, start,
                                  end)
    try:
        results = inferencer(video, batch_size=args.batch_size,
                             keyframes=keyframes)['predictions']
    except (VideoReadError, ValueError) as err:
        return print_error(str(err))

    out_indices = np.arange(start, end, args.output_stepsize)
    which = nearest_keyframe(out_indices, keyframes)
    out_fps = args.output_fps or fps / args.output_stepsize
    draw = inferencer.visualizer.draw_result
    try:
        with Mp4Writer(args.out, out_fps) as writer:
            for s in progress_bar(range(0, len(out_indices), 64),
                                  -(-len(out_indices) // 64), 'Render'):
                frames = video.get_batch(out_indices[s:s + 64])
                for frame, r in zip(frames, which[s:s + 64]):
                    writer.write(draw(frame, results[r]))
    except (VideoReadError, RuntimeError) as err:
        return print_error(str(err))
    actor_thr = inferencer.actor_thr
    detections = sum(int((r.actor_scores >= actor_thr).sum())
                     for r in results)
    print(f'Wrote {len(out_indices)} frames ({video.width}x{video.height}, '
          f'{out_fps:.3g} fps) to {args.out}: {len(results)} keyframes, '
          f'{detections} actors drawn (person score >= {actor_thr:g}), '
          f'{time.time() - tic:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
