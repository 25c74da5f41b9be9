"""Join a folder of frames (mmaction2's rawframes layout) into an mp4 video,
e.g. a toy AVA video for ``tools/demo.py`` or
``tools/analysis/visualize_tokens.py``.

Usage::

    python tools/data/frames_to_video.py data/toy_ava/rawframes/toy_v036 \\
        toy_v036.mp4 [--fps 10] [--pattern 'img_*.jpg']

The frames are taken in file-name order; frame ``n`` (from 0) of the video
is the ``n``-th file, so with ``--fps`` the video's fps a time ``s`` of the
video is the file ``round(s * fps)`` from 0 (in the toy set, AVA timestamp
``900 + s``).
"""
import argparse
import glob
import os.path as osp
import sys
from typing import Optional, Sequence

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, REPO)


def frames_to_video(frames_dir: str, out: str, fps: float,
                    pattern: str = 'img_*.jpg') -> int:
    """Write the frames of ``frames_dir`` matching ``pattern`` to ``out``.

    Returns:
        int: The number of frames written.

    Raises:
        FileNotFoundError: No frame matches.
        RuntimeError: A frame cannot be read or has another size (from
            :class:`~evad_mm.apis.video_writer.Mp4Writer`).
    """
    import mmcv

    from evad_mm.apis.video_writer import Mp4Writer
    files = sorted(glob.glob(osp.join(frames_dir, pattern)))
    if not files:
        raise FileNotFoundError(
            f'no frame matches {osp.join(frames_dir, pattern)} (set '
            '--pattern to the frames\' file names)')
    with Mp4Writer(out, fps) as writer:
        for path in files:
            frame = mmcv.imread(path, channel_order='rgb')
            if frame is None:
                raise RuntimeError(f'cannot read the frame {path}')
            writer.write(frame)
    return len(files)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description='Join a folder of frames into an mp4 video')
    parser.add_argument('frames_dir', help='folder of frames')
    parser.add_argument('out', help='output .mp4 file')
    parser.add_argument('--fps', type=float, default=10.,
                        help='frame rate (default 10, the toy set\'s)')
    parser.add_argument('--pattern', default='img_*.jpg',
                        help='file names of the frames (glob)')
    args = parser.parse_args(argv)
    if args.fps <= 0:
        parser.error('--fps must be > 0')
    try:
        count = frames_to_video(args.frames_dir, args.out, args.fps,
                                args.pattern)
    except (FileNotFoundError, RuntimeError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    print(f'wrote {args.out}: {count} frames at {args.fps:g} fps')
    return 0


if __name__ == '__main__':
    sys.exit(main())
