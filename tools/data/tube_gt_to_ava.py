"""Convert tube ground truth (UCF101-24, JHMDB-21, MultiSports) to AVA
format.

Usage::

    python tools/data/tube_gt_to_ava.py GT_PKL OUT_DIR [--split 1] \\
        [--every 1] [--val-every 1] [--clip-boxes]

``GT_PKL`` is the pickled ground truth that action-tube detectors share
(``UCF101v2-GT.pkl``, ``JHMDB-GT.pkl``, ``multisports_GT.pkl``), a dict of

* ``labels``: the class names;
* ``gttubes``: ``{video: {label_index: [tube, ...]}}``, each tube an
  (N, 5) array of rows ``frame, x1, y1, x2, y2`` (frame numbers from 1,
  boxes in pixels);
* ``nframes``: ``{video: number of frames}``;
* ``resolution``: ``{video: (height, width)}``;
* ``train_videos`` / ``test_videos``: one list of video names per split
  (a single flat list is taken as one split).

``OUT_DIR`` receives what mmaction2's ``AVADataset`` and ``AVAMetric``
read:

* ``train.csv`` (the split's ``train_videos``) and ``val.csv`` (its
  ``test_videos``): rows ``video_id,timestamp,x1,y1,x2,y2,action_id,
  entity_id`` where ``timestamp`` is the frame number (so the datasets use
  ``fps=1``, as mmaction2's MultiSports configs do), the box is divided by
  the frame's width and height, ``action_id`` is the label index + 1 (column
  0 of the scores stays unused) and ``entity_id`` numbers the tubes of a
  video. One keyframe per annotated frame; ``--every N`` keeps frames 1,
  1 + N, 1 + 2N, ... of each training video (all actors of a kept frame),
  ``--val-every`` the same for the validation videos;
* ``train_excluded_timestamps.csv``, ``val_excluded_timestamps.csv``:
  empty;
* ``action_list.pbtxt``: every class, ids from 1, fields indented by two
  spaces.

Video names keep their folders (``Basketball/v_Basketball_g01_c01``):
``AVADataset`` joins them to ``data_prefix.img``, so the frames of a video
are ``<data_prefix.img>/Basketball/v_Basketball_g01_c01/<filename_tmpl>``.

The input is checked first; every problem (missing keys, unknown videos or
labels, malformed tubes, frame numbers outside ``1..nframes``, boxes
outside the frame or empty) is reported with its video and frame, and
nothing is written. Boxes that cross the frame border are errors unless
``--clip-boxes`` clips them to it. The pickle is read with an unpickler that
only admits built-in containers and numpy arrays.
"""
import argparse
import math
import os
import os.path as osp
import pickle
import sys
from collections import Counter, defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

REQUIRED_KEYS = ('labels', 'gttubes', 'nframes', 'resolution',
                 'train_videos', 'test_videos')
DEFAULT_MAX_SHOWN = 20

# What numpy arrays pickled by Python 2 or 3 / numpy 1 or 2 need.
_SAFE_GLOBALS = {
    ('numpy', 'ndarray'),
    ('numpy', 'dtype'),
    ('numpy.core.multiarray', '_reconstruct'),
    ('numpy.core.multiarray', 'scalar'),
    ('numpy._core.multiarray', '_reconstruct'),
    ('numpy._core.multiarray', 'scalar'),
    ('numpy.core.numeric', '_frombuffer'),
    ('numpy._core.numeric', '_frombuffer'),
    ('copy_reg', '_reconstructor'),
    ('copyreg', '_reconstructor'),
    ('__builtin__', 'object'),
    ('builtins', 'object'),
    ('_codecs', 'encode'),  # bytes in protocol 2 pickles from Python 3
    ('collections', 'OrderedDict'),
    ('collections', 'defaultdict'),
}


class GroundTruthError(ValueError):
    """The ground truth cannot be converted as it is."""


class _SafeUnpickler(pickle.Unpickler):
    """Admits only containers and numpy arrays (no code execution)."""

    def find_class(self, module: str, name: str):
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        if module == 'numpy' and name in ('float32', 'float64', 'int32',
                                          'int64', 'uint8', 'bool_'):
            return super().find_class(module, name)
        raise GroundTruthError(
            f'the pickle refers to {module}.{name}, which a tube ground '
            'truth (dicts, lists and numpy arrays) does not need; refusing '
            'to load it (it could run code). Re-save the ground truth with '
            'plain containers and numpy arrays.')


def load_ground_truth(path: str) -> dict:
    """Read ``path`` with the restricted unpickler. Python 2 pickles (the
    original UCF101-24 / JHMDB files) are decoded as latin-1."""
    if not osp.isfile(path):
        raise GroundTruthError(f'{path} does not exist or is not a file')
    try:
        with open(path, 'rb') as f:
            gt = _SafeUnpickler(f, encoding='latin1').load()
    except GroundTruthError as err:
        raise GroundTruthError(f'{path}: {err}') from None
    except Exception as err:
        raise GroundTruthError(
            f'{path} is not a readable pickle ({type(err).__name__}: '
            f'{err}); expected the pickled tube ground truth (e.g. '
            'UCF101v2-GT.pkl, JHMDB-GT.pkl)') from err
    if not isinstance(gt, dict):
        raise GroundTruthError(
            f'{path} holds a {type(gt).__name__}, expected a dict with keys '
            f'{", ".join(REQUIRED_KEYS)}')
    return gt


class _Problems:
    """Collects problems by kind; shows at most ``max_shown`` per kind."""

    def __init__(self, max_shown: int = DEFAULT_MAX_SHOWN) -> None:
        self.max_shown = max_shown
        self.by_kind: Dict[str, List[str]] = defaultdict(list)

    def add(self, kind: str, message: str) -> None:
        self.by_kind[kind].append(message)

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_kind.values())

    def format(self) -> str:
        lines = []
        for kind, messages in self.by_kind.items():
            lines.append(f'{kind} ({len(messages)}):')
            lines += [f'  {m}' for m in messages[:self.max_shown]]
            if len(messages) > self.max_shown:
                lines.append(f'  ... and {len(messages) - self.max_shown} '
                             'more')
        return '\n'.join(lines)


def _split_lists(gt: dict, key: str) -> List[List[str]]:
    """``gt[key]`` as one list of video names per split."""
    value = gt[key]
    if not isinstance(value, (list, tuple)) or not value:
        raise GroundTruthError(
            f'{key} must be a non-empty list with one list of video names '
            f'per split, got {type(value).__name__}')
    if all(isinstance(v, str) for v in value):
        return [list(value)]  # one split, given flat
    if not all(isinstance(s, (list, tuple)) for s in value):
        raise GroundTruthError(
            f'{key} must be a list of video-name lists (one per split); it '
            'mixes names and lists')
    return [list(s) for s in value]


def check_structure(gt: dict, split: int) -> Tuple[List[str], List[str]]:
    """Top-level checks; returns the split's (train videos, test videos).

    Raises:
        GroundTruthError: on missing keys, wrong types, an unknown split or
            unusable class names.
    """
    missing = [k for k in REQUIRED_KEYS if k not in gt]
    if missing:
        raise GroundTruthError(
            f'the ground truth lacks {", ".join(missing)} (it has '
            f'{", ".join(sorted(map(str, gt)))}); expected the pickled '
            f'tube ground truth with keys {", ".join(REQUIRED_KEYS)}')
    labels = gt['labels']
    if (not isinstance(labels, (list, tuple)) or not labels
            or not all(isinstance(n, str) for n in labels)):
        raise GroundTruthError('labels must be a non-empty list of class '
                               'names (strings)')
    bad = [n for n in labels if '"' in n or '\n' in n or not n.strip()]
    if bad:
        raise GroundTruthError(
            f'class names {bad[:5]} are empty or contain a double quote or '
            'a line break, which the pbtxt label map cannot hold; rename '
            'them in the ground truth')
    for key in ('gttubes', 'nframes', 'resolution'):
        if not isinstance(gt[key], dict):
            raise GroundTruthError(
                f'{key} must be a dict keyed by video name, got '
                f'{type(gt[key]).__name__}')
    train, test = _split_lists(gt, 'train_videos'), _split_lists(
        gt, 'test_videos')
    if len(train) != len(test):
        raise GroundTruthError(
            f'train_videos has {len(train)} splits but test_videos '
            f'{len(test)}; they must list the same splits')
    if not 1 <= split <= len(train):
        raise GroundTruthError(
            f'--split {split} does not exist: the ground truth has '
            f'{len(train)} split(s), numbered from 1')
    return train[split - 1], test[split - 1]


def _video_name_problem(video) -> Optional[str]:
    if not isinstance(video, str) or not video:
        return f'{video!r} is not a video name (a non-empty string)'
    if ',' in video or video != video.strip() or '\n' in video:
        return (f'{video!r} contains a comma, a line break or surrounding '
                'spaces, which the CSV format cannot hold; rename the video '
                '(its frame folder) and its ground-truth keys')
    if video.startswith('/') or '..' in video.split('/'):
        return (f'{video!r} is absolute or climbs folders; AVADataset '
                'joins video names to data_prefix.img, so they must be '
                'relative paths')
    return None


def _video_info(gt: dict, video: str,
                problems: _Problems) -> Optional[Tuple[int, float, float]]:
    """``(nframes, height, width)`` of ``video``, or None (reported)."""
    if video not in gt['nframes'] or video not in gt['resolution']:
        which = [k for k in ('nframes', 'resolution') if video not in gt[k]]
        problems.add('unknown videos',
                     f'{video}: listed in a split but missing from '
                     f'{" and ".join(which)}')
        return None
    nframes = gt['nframes'][video]
    try:
        h, w = (float(v) for v in gt['resolution'][video])
    except (TypeError, ValueError):
        problems.add('bad video info',
                     f'{video}: resolution {gt["resolution"][video]!r} is '
                     'not (height, width)')
        return None
    if (isinstance(nframes, bool) or not isinstance(nframes,
                                                    (int, np.integer))
            or nframes < 1):
        problems.add('bad video info',
                     f'{video}: nframes {nframes!r} is not a positive '
                     'integer')
        return None
    if not (h > 0 and w > 0 and math.isfinite(h) and math.isfinite(w)):
        problems.add('bad video info',
                     f'{video}: resolution {(h, w)} is not positive')
        return None
    return int(nframes), h, w


def video_rows(gt: dict, video: str, info: Tuple[int, float, float],
               every: int, clip_boxes: bool, problems: _Problems,
               stats: Counter) -> List[tuple]:
    """AVA rows of one video: ``(video, frame, x1, y1, x2, y2, action_id,
    entity_id)`` with normalised boxes, for frames ``1 + k * every``."""
    nframes, h, w = info
    tubes_by_label = gt['gttubes'].get(video)
    if not tubes_by_label:
        stats['videos without tubes'] += 1
        return []
    if not isinstance(tubes_by_label, dict):
        problems.add('malformed tubes',
                     f'{video}: gttubes entry is a '
                     f'{type(tubes_by_label).__name__}, expected '
                     '{label_index: [tube, ...]}')
        return []
    num_labels = len(gt['labels'])
    valid = []
    for label in tubes_by_label:
        if (isinstance(label, bool)
                or not isinstance(label, (int, np.integer))
                or not 0 <= label < num_labels):
            problems.add(
                'unknown labels',
                f'{video}: label index {label!r} is not in 0..'
                f'{num_labels - 1} (labels has {num_labels} names)')
        else:
            valid.append(label)
    rows, entity = [], 0
    for label in sorted(valid):
        tubes = tubes_by_label[label]
        if isinstance(tubes, np.ndarray) and tubes.ndim == 2:
            tubes = [tubes]  # a single tube stored bare
        for tube in tubes:
            rows += _tube_rows(video, tube, int(label), entity, nframes, h,
                               w, every, clip_boxes, problems, stats)
            entity += 1
    return rows


def _tube_rows(video, tube, label, entity, nframes, h, w, every, clip_boxes,
               problems, stats) -> List[tuple]:
    """Rows of one tube (see :func:`video_rows`)."""
    where = f'{video} tube {entity} (label {label})'
    try:
        tube = np.asarray(tube, dtype=np.float64)
    except (TypeError, ValueError):
        problems.add('malformed tubes', f'{where}: not a numeric array')
        return []
    if tube.ndim != 2 or tube.shape[1] != 5:
        problems.add(
            'malformed tubes',
            f'{where}: shape {tube.shape}, expected (N, 5) rows of frame, '
            'x1, y1, x2, y2')
        return []
    rows, seen = [], set()
    for frame, x1, y1, x2, y2 in tube:
        at = f'{video} frame {frame:g} (label {label}, tube {entity})'
        if not (math.isfinite(frame) and frame == int(frame)
                and 1 <= frame <= nframes):
            problems.add(
                'frames outside the video',
                f'{at}: frame number is not an integer in 1..{nframes} '
                '(nframes); frame numbers count from 1')
            continue
        frame = int(frame)
        if frame in seen:
            problems.add('repeated frames', f'{at}: annotated twice in '
                         'one tube')
            continue
        seen.add(frame)
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            problems.add('bad boxes', f'{at}: non-finite box')
            continue
        outside = x1 < 0 or y1 < 0 or x2 > w or y2 > h
        if outside and clip_boxes:
            x1, x2 = min(max(x1, 0.), w), min(max(x2, 0.), w)
            y1, y2 = min(max(y1, 0.), h), min(max(y2, 0.), h)
            stats['boxes clipped'] += 1
        elif outside:
            problems.add(
                'boxes outside the frame',
                f'{at}: box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) is not inside '
                f'the {w:g}x{h:g} frame (resolution); pass --clip-boxes to '
                'clip boxes to the frame')
            continue
        if not (x1 < x2 and y1 < y2):
            problems.add(
                'bad boxes',
                f'{at}: box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) is empty'
                f'{" after clipping" if outside else ""} (needs x1 < x2 '
                'and y1 < y2)')
            continue
        if (frame - 1) % every:
            continue
        rows.append((video, frame, x1 / w, y1 / h, x2 / w, y2 / h, label + 1,
                     entity))
    return rows


def split_rows(gt: dict, videos: Sequence[str], every: int,
               clip_boxes: bool, problems: _Problems,
               stats: Counter) -> List[tuple]:
    """Rows of every video in ``videos``, sorted by video, frame, actor."""
    rows = []
    for video in videos:
        problem = _video_name_problem(video)
        if problem:
            problems.add('bad video names', problem)
            continue
        info = _video_info(gt, video, problems)
        if info is not None:
            rows += video_rows(gt, video, info, every, clip_boxes, problems,
                               stats)
    return sorted(rows, key=lambda r: (r[0], r[1], r[7]))


def write_csv(path: str, rows: Sequence[tuple]) -> None:
    """AVA rows, boxes to 4 decimals (1/10000 of the frame)."""
    with open(path, 'w') as f:
        for video, frame, x1, y1, x2, y2, action, entity in rows:
            f.write(f'{video},{frame},{x1:.4f},{y1:.4f},{x2:.4f},{y2:.4f},'
                    f'{action},{entity}\n')


def write_label_map(path: str, labels: Sequence[str]) -> None:
    """Every class as an item, ids from 1, fields indented by two spaces."""
    with open(path, 'w') as f:
        for i, name in enumerate(labels, 1):
            f.write(f'item {{\n  name: "{name}"\n  id: {i}\n}}\n')


def convert(gt_path: str,
            out_dir: str,
            split: int = 1,
            every: int = 1,
            val_every: int = 1,
            clip_boxes: bool = False,
            max_shown: int = DEFAULT_MAX_SHOWN) -> dict:
    """Convert ``gt_path`` into AVA files in ``out_dir``.

    Returns:
        dict: ``train`` / ``val`` statistics (videos, keyframes, rows,
        classes), ``num_classes`` (``len(labels) + 1``), ``max_nframes``
        and the counts of skipped or clipped items.

    Raises:
        GroundTruthError: if the input has problems (nothing is written).
    """
    for name, value in (('--every', every), ('--val-every', val_every)):
        if value < 1:
            raise GroundTruthError(f'{name} must be >= 1, got {value}')
    gt = load_ground_truth(gt_path)
    train_videos, test_videos = check_structure(gt, split)
    problems, stats = _Problems(max_shown), Counter()
    overlap = sorted(set(train_videos) & set(test_videos))
    if overlap:
        problems.add(
            'videos in both train and test',
            f'{len(overlap)} video(s) of split {split}, e.g. {overlap[:3]}; '
            'training on test videos would inflate the results')
    rows = dict(
        train=split_rows(gt, train_videos, every, clip_boxes, problems,
                         stats),
        val=split_rows(gt, test_videos, val_every, clip_boxes, problems,
                       stats))
    if problems:
        raise GroundTruthError(
            f'{gt_path}: {len(problems)} problem(s), nothing written:\n'
            f'{problems.format()}')
    os.makedirs(out_dir, exist_ok=True)
    summary = dict(
        num_classes=len(gt['labels']) + 1,
        max_nframes=int(
            max((gt['nframes'][v] for v in train_videos + test_videos),
                default=0)),
        **stats)
    for name, videos in (('train', train_videos), ('val', test_videos)):
        write_csv(osp.join(out_dir, f'{name}.csv'), rows[name])
        open(osp.join(out_dir, f'{name}_excluded_timestamps.csv'),
             'w').close()
        summary[name] = dict(
            videos=len(videos),
            keyframes=len({r[:2] for r in rows[name]}),
            rows=len(rows[name]),
            classes=len({r[6] for r in rows[name]}))
    write_label_map(osp.join(out_dir, 'action_list.pbtxt'), gt['labels'])
    return summary


def format_summary(summary: dict, out_dir: str, labels_count: int) -> str:
    """Human-readable summary of :func:`convert`'s result."""
    lines = [f'wrote {out_dir}/{{train,val}}.csv, '
             '{train,val}_excluded_timestamps.csv, action_list.pbtxt']
    for name in ('train', 'val'):
        s = summary[name]
        lines.append(f'{name}: {s["videos"]} videos, {s["keyframes"]} '
                     f'keyframes, {s["rows"]} boxes, {s["classes"]} of '
                     f'{labels_count} classes')
    lines.append(f'num_classes (model, datasets, metric): '
                 f'{summary["num_classes"]}; longest video: '
                 f'{summary["max_nframes"]} frames')
    for key in ('videos without tubes', 'boxes clipped'):
        if summary.get(key):
            lines.append(f'{key}: {summary[key]}')
    return '\n'.join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert pickled tube ground truth (UCF101-24, '
        'JHMDB-21, MultiSports) to the AVA files of mmaction2\'s '
        'AVADataset.')
    parser.add_argument('gt', help='the ground-truth pickle')
    parser.add_argument('out_dir', help='folder for the AVA files')
    parser.add_argument(
        '--split', type=int, default=1,
        help='split of train_videos / test_videos, from 1 (default: 1)')
    parser.add_argument(
        '--every', type=int, default=1,
        help='keep training frames 1, 1+N, 1+2N, ... (default: 1, all)')
    parser.add_argument(
        '--val-every', type=int, default=1,
        help='the same for the test videos (default: 1; frame-mAP is '
        'defined over every annotated frame)')
    parser.add_argument(
        '--clip-boxes', action='store_true',
        help='clip boxes crossing the frame border instead of failing')
    parser.add_argument(
        '--max-shown', type=int, default=DEFAULT_MAX_SHOWN,
        help='problems shown per kind (default: %(default)s)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        summary = convert(args.gt, args.out_dir, args.split, args.every,
                          args.val_every, args.clip_boxes, args.max_shown)
    except GroundTruthError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    print(format_summary(summary, args.out_dir, summary['num_classes'] - 1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
