"""Check an AVA-format data set before training on it.

Usage::

    python tools/data/check_ava_dataset.py CONFIG [--split train|val|test|all]
    python tools/data/check_ava_dataset.py --ann-file train.csv \\
        --label-file action_list.pbtxt --frame-dir rawframes --fps 30 \\
        --timestamp-start 900 --timestamp-end 1800 --clip-len 16 \\
        --frame-interval 4 --num-classes 81 [--exclude-file FILE]

With a config, the ``train_dataloader`` / ``val_dataloader`` /
``test_dataloader`` datasets (mmaction2's ``AVADataset``) and the
``SampleAVAFrames`` step of their pipelines give the settings; options given
next to a config override its values in every checked split. Without a
config the options describe one data set (``--split`` names it, ``train`` by
default).

Everything is checked the way mmaction2 1.2's ``AVADataset``,
``SampleAVAFrames``, ``RawFrameDecode`` and ``AVAMetric`` read the files:

* annotation CSV: no header, 8 columns ``video_id,timestamp,x1,y1,x2,y2,
  action_id,entity_id`` (``AVADataset`` reads column 8, ``AVAMetric``
  accepts at most 8), integer timestamps in [timestamp_start,
  timestamp_end], finite boxes normalised to [0, 1] with x1 < x2, y1 < y2,
  action ids in the label map, >= 1 and < num_classes (or in
  ``custom_classes``); duplicated rows are warnings;
* frames: for every annotated, not excluded keyframe, every frame file the
  clip sampler can read exists, with mmaction2's index arithmetic
  (``fps * (timestamp - timestamp_start) + start_index`` as the centre,
  indices clamped to ``[0, fps * (timestamp_end - timestamp_start))``, then
  ``start_index`` added again, plus the random training jitter);
* label map: the pbtxt as mmaction2's ``read_labelmap`` parses it (fields
  indented by exactly two spaces, ``name`` before ``id`` in every item);
* excluded timestamps: ``video_id,timestamp`` rows of known videos;
* settings: ``custom_classes`` (a subset of the label ids, without 0,
  ``num_classes == len(custom_classes) + 1``) and, with a config, the
  model's and the evaluator's class settings; classes without examples are
  warnings.

The exit code is 1 when there is an error, 0 otherwise (warnings do not
fail).
"""
import argparse
import math
import os
import os.path as osp
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SPLITS = ('train', 'val', 'test')
CSV_COLUMNS = ('video_id', 'timestamp', 'x1', 'y1', 'x2', 'y2', 'action_id',
               'entity_id')
LABEL_FIELDS = ('name', 'id', 'label_id')
DEFAULT_MAX_SHOWN = 20
ERROR, WARNING = 'error', 'warning'

# AVADataset's and SampleAVAFrames' defaults (mmaction2 1.2.0)
DATASET_DEFAULTS = dict(
    exclude_file=None,
    label_file=None,
    proposal_file=None,
    filename_tmpl='img_{:05}.jpg',
    start_index=1,
    num_classes=81,
    custom_classes=None,
    fps=30,
    timestamp_start=900,
    timestamp_end=1800)
SAMPLER_DEFAULT_FRAME_INTERVAL = 2


@dataclass(frozen=True)
class Problem:
    """One finding, located in a file (and a line of it when known)."""

    level: str
    kind: str
    path: str
    line: Optional[int]
    message: str
    hint: str = ''

    def format(self) -> str:
        """``path:line: level: message (fix: hint)``."""
        where = self.path if self.line is None else f'{self.path}:{self.line}'
        text = f'{where}: {self.level}: {self.message}'
        return f'{text} (fix: {self.hint})' if self.hint else text


@dataclass
class DatasetSettings:
    """What the checks need to know about one split's data set."""

    split: str
    source: str  # the config file, or '<command line>'
    ann_file: str
    exclude_file: Optional[str] = None
    label_file: Optional[str] = None
    proposal_file: Optional[str] = None
    frame_root: str = ''
    filename_tmpl: str = DATASET_DEFAULTS['filename_tmpl']
    start_index: int = DATASET_DEFAULTS['start_index']
    num_classes: int = DATASET_DEFAULTS['num_classes']
    custom_classes: Optional[List[int]] = None
    fps: int = DATASET_DEFAULTS['fps']
    timestamp_start: int = DATASET_DEFAULTS['timestamp_start']
    timestamp_end: int = DATASET_DEFAULTS['timestamp_end']
    clip_len: Optional[int] = None  # None: only the keyframe is checked
    frame_interval: int = SAMPLER_DEFAULT_FRAME_INTERVAL
    sampler_test_mode: bool = False
    # the pipeline counts each video's frames (evad_mm's RawFrameInit):
    # number of its first frame file; None: one frame range for all videos
    frame_first_index: Optional[int] = None
    # config mode only: the model's / evaluator's class settings
    model_num_classes: Optional[int] = None
    evaluator: Optional[dict] = None


@dataclass
class AnnotationRow:
    """One parsed line of an annotation CSV."""

    line: int
    video_id: str
    timestamp: int
    box: Tuple[float, float, float, float]
    action_id: int
    entity_id: int


@dataclass
class LabelMap:
    """Label ids and names as mmaction2 reads them, with their lines."""

    names: Dict[int, str] = field(default_factory=dict)
    id_lines: Dict[int, int] = field(default_factory=dict)


@dataclass
class SplitReport:
    """Counts and problems of one checked split."""

    settings: DatasetSettings
    problems: List[Problem] = field(default_factory=list)
    stats: Dict[str, int] = field(default_factory=dict)
    same_as: Optional[str] = None

    def add(self,
            level: str,
            kind: str,
            path: str,
            line: Optional[int],
            message: str,
            hint: str = '') -> None:
        """Record one problem."""
        self.problems.append(Problem(level, kind, path, line, message, hint))

    def count(self, level: str) -> int:
        """Number of problems of ``level``."""
        return sum(p.level == level for p in self.problems)


# --------------------------------------------------------------------------
# label map
# --------------------------------------------------------------------------


def _label_field(line: str) -> Optional[Tuple[str, int]]:
    """(field name, indentation) of a ``name:``/``id:``/``label_id:`` line."""
    stripped = line.lstrip(' \t')
    for name in LABEL_FIELDS:
        if stripped.startswith(name + ':'):
            return name, len(line) - len(stripped)
    return None


def _mmaction_read_labelmap(path: str) -> Tuple[list, set]:
    """mmaction2's own pbtxt reader (``ava_utils.read_labelmap``)."""
    from mmaction.evaluation.functional.ava_utils import read_labelmap
    with open(path) as f:
        return read_labelmap(f)


def check_label_map(path: str, report: SplitReport) -> Optional[LabelMap]:
    """Check a pbtxt label map; return its ids and names if it is usable.

    mmaction2's reader only looks at lines starting with ``'  name:'`` and
    ``'  id:'`` / ``'  label_id:'`` (two spaces) and adds an item at each id
    line, with the last name seen. Anything else is silently ignored, so a
    differently indented file yields no (or shifted) classes.
    """
    label_map = LabelMap()
    errors_before = report.count(ERROR)
    with open(path) as f:
        lines = f.read().splitlines()
    block_start, block_fields = None, []

    def close_block() -> None:
        fields = [name for name, _ in block_fields]
        ids = [n for n in fields if n != 'name']
        if 'name' not in fields:
            report.add(ERROR, 'label map', path, block_start,
                       'item has no `name:` line',
                       'add `  name: "<class name>"` before the id')
        if not ids:
            report.add(ERROR, 'label map', path, block_start,
                       'item has no `id:` line, so mmaction2 skips it',
                       'add `  id: <integer>` after the name')
        if len(ids) > 1 or fields.count('name') > 1:
            report.add(ERROR, 'label map', path, block_start,
                       'item has more than one name or id',
                       'one `name:` and one `id:` per item')
        elif fields and fields[0] != 'name' and 'name' in fields:
            report.add(
                ERROR, 'label map', path, block_start,
                '`id:` comes before `name:`: mmaction2 pairs an id '
                'with the name read before it, so names shift',
                'put `name:` first in every item')

    for lineno, line in enumerate(lines, 1):
        stripped = line.strip()
        parsed = _label_field(line)
        if stripped.endswith('{'):
            if block_start is not None:
                report.add(ERROR, 'label map', path, lineno,
                           'item opened inside another item',
                           'close the previous item with `}`')
            block_start, block_fields = lineno, []
        elif stripped == '}':
            if block_start is None:
                report.add(ERROR, 'label map', path, lineno,
                           '`}` without an open item', 'remove it')
            else:
                close_block()
            block_start = None
        elif parsed is not None:
            name, indent = parsed
            if block_start is None:
                report.add(ERROR, 'label map', path, lineno,
                           f'`{name}:` outside an `item {{ ... }}` block',
                           'wrap it in `item {` ... `}`')
            else:
                block_fields.append((name, lineno))
            if not line.startswith('  ' + name + ':'):
                report.add(
                    ERROR, 'label map', path, lineno,
                    f'`{name}:` is indented by {indent} characters; '
                    "mmaction2's reader only reads lines starting with "
                    'exactly two spaces and ignores this one',
                    f'indent it with two spaces: `  {stripped}`')
            elif name == 'name' and line.count('"') < 2:
                report.add(
                    ERROR, 'label map', path, lineno,
                    'the name is not in double quotes '
                    "(mmaction2's reader fails on it)",
                    'write `  name: "<class name>"`')
            elif name != 'name':
                value = line.strip().split(' ')[-1]
                try:
                    class_id = int(value)
                except ValueError:
                    report.add(ERROR, 'label map', path, lineno,
                               f'id {value!r} is not an integer',
                               'write `  id: <integer>`')
                    continue
                _add_label_id(label_map, class_id, lineno, lines, path, report)
        elif stripped and not stripped.startswith('#') and \
                block_start is None:
            report.add(WARNING, 'label map', path, lineno,
                       f'unexpected line {stripped!r} outside the items',
                       'remove it')
    if block_start is not None:
        report.add(ERROR, 'label map', path, block_start,
                   'item is never closed', 'end it with a `}` line')
    if not label_map.names and report.count(ERROR) == errors_before:
        report.add(ERROR, 'label map', path, None,
                   'no `item { name: ... id: ... }` entries',
                   'write one item per class, see the AVA pbtxt format')
    clean = report.count(ERROR) == errors_before
    return _compare_with_mmaction(path, label_map, clean, report)


def _add_label_id(label_map: LabelMap, class_id: int, lineno: int,
                  lines: List[str], path: str, report: SplitReport) -> None:
    """Record ``class_id`` (with the last name read) and check it."""
    name = ''
    for previous in reversed(lines[:lineno - 1]):
        if previous.startswith('  name:') and previous.count('"') >= 2:
            name = previous.split('"')[1]
            break
    if class_id in label_map.names:
        report.add(
            ERROR, 'label map', path, lineno,
            f'id {class_id} is used twice (first at line '
            f'{label_map.id_lines[class_id]})', 'give every class its own id')
        return
    if class_id < 1:
        report.add(
            ERROR, 'label map', path, lineno,
            f'id {class_id}: AVA ids start at 1 (column 0 of the '
            'label vector is ignored by the heads and the metric)',
            'number the classes from 1')
    if name in label_map.names.values():
        report.add(WARNING, 'label map', path, lineno,
                   f'name {name!r} is used by two ids',
                   'give every class its own name')
    label_map.names[class_id] = name
    label_map.id_lines[class_id] = lineno


def _compare_with_mmaction(path: str, label_map: LabelMap, clean: bool,
                           report: SplitReport) -> Optional[LabelMap]:
    """Run mmaction2's reader too; on a file without errors (``clean``)
    it must give the same classes."""
    try:
        items, class_ids = _mmaction_read_labelmap(path)
    except (IndexError, ValueError) as exc:
        report.add(ERROR, 'label map', path, None,
                   f"mmaction2's read_labelmap fails: {exc!r}",
                   'fix the lines reported above')
        return None
    theirs = {item['id']: item['name'] for item in items}
    if clean and theirs != label_map.names:
        report.add(
            ERROR, 'label map', path, None,
            f"mmaction2's read_labelmap gives {theirs}, the checker "
            f'read {label_map.names}', 'check the file by hand')
    if not class_ids:
        return None
    return label_map


# --------------------------------------------------------------------------
# annotation CSV and excluded timestamps
# --------------------------------------------------------------------------


def _csv_lines(path: str) -> List[str]:
    """Lines as ``AVADataset`` reads them: text mode (universal newlines),
    split at ``\\n`` (mmengine's ``list_from_file``, ``open``)."""
    with open(path, encoding='utf-8') as f:
        return [line.rstrip('\n\r') for line in f]


def _columns(count: int) -> str:
    """'1 column', '7 columns'."""
    return f'{count} column' + ('s' if count != 1 else '')


def _number(text: str, kind: type) -> Optional[float]:
    """``kind(text)`` or None when Python cannot parse it."""
    try:
        return kind(text)
    except ValueError:
        return None


def parse_annotation_line(line: str, lineno: int, settings: DatasetSettings,
                          report: SplitReport) -> Optional[AnnotationRow]:
    """Parse one CSV line like ``AVADataset.load_data_list``.

    Problems are recorded in ``report``; rows with a syntax error return
    None (the real loader would crash on them).
    """
    path = settings.ann_file

    def error(message: str, hint: str) -> None:
        report.add(ERROR, 'csv schema', path, lineno, message, hint)

    if lineno == 1 and line.startswith('\ufeff'):
        error(
            'the file starts with a UTF-8 byte-order mark, which becomes '
            'part of the first video id', 'save the file without a BOM')
        return None
    parts = line.strip().split(',')
    if not line.strip():
        error('empty line (AVADataset fails on it)', 'delete the line')
        return None
    if len(parts) < len(CSV_COLUMNS):
        error(
            f'{_columns(len(parts))}, expected 8: '
            f'{",".join(CSV_COLUMNS)} (AVADataset reads the entity id '
            'from column 8)',
            'add the missing columns; entity_id numbers the person '
            'track')
        return None
    if len(parts) > len(CSV_COLUMNS):
        level = WARNING if settings.split == 'train' else ERROR
        report.add(
            level, 'csv schema', path, lineno,
            f'{_columns(len(parts))}, expected 8: AVADataset ignores '
            'the extra ones but AVAMetric rejects rows with more '
            'than 8', 'keep only the 8 AVA columns')
    timestamp = _number(parts[1], int)
    if timestamp is None:
        header = lineno == 1 and not parts[1].strip().lstrip('-').replace(
            '.', '', 1).isdigit()
        error(
            f'timestamp {parts[1]!r} is not an integer (AVADataset '
            'reads it with int())', 'remove the header line' if header else
            'write whole seconds (or frames with fps=1), e.g. 0902')
        return None
    box = [_number(text, float) for text in parts[2:6]]
    if any(value is None for value in box):
        error(f'box {",".join(parts[2:6])!r} is not four numbers',
              'write x1,y1,x2,y2 as decimal numbers')
        return None
    action_id = _number(parts[6], int)
    entity_id = _number(parts[7], int)
    if action_id is None or entity_id is None:
        bad = 'action_id' if action_id is None else 'entity_id'
        error(
            f'{bad} {parts[6 if action_id is None else 7]!r} is not an '
            'integer', f'write {bad} as an integer')
        return None
    if not parts[0]:
        error('empty video_id', 'write the name of the frame folder')
        return None
    return AnnotationRow(lineno, parts[0], timestamp, tuple(box), action_id,
                         entity_id)


def check_box(row: AnnotationRow, path: str, report: SplitReport) -> bool:
    """Boxes are finite, normalised to [0, 1] and not empty; True if so."""
    x1, y1, x2, y2 = row.box
    text = ','.join(f'{v:g}' for v in row.box)
    if not all(math.isfinite(v) for v in row.box):
        report.add(ERROR, 'box', path, row.line, f'box ({text}) is not finite',
                   'write real coordinates')
    elif min(row.box) < 0 or max(row.box) > 1:
        report.add(
            ERROR, 'box', path, row.line, f'box ({text}) is outside [0, 1]',
            'boxes are normalised: divide x by the frame width and '
            'y by its height, then clip to [0, 1]')
    elif not (x1 < x2 and y1 < y2):
        report.add(ERROR, 'box', path, row.line,
                   f'box ({text}) needs x1 < x2 and y1 < y2',
                   'columns are x1,y1,x2,y2 (top-left, bottom-right)')
    else:
        return True
    return False


def check_timestamp(row: AnnotationRow, settings: DatasetSettings,
                    report: SplitReport) -> None:
    """Timestamps lie in [timestamp_start, timestamp_end]."""
    start, end = settings.timestamp_start, settings.timestamp_end
    if not start <= row.timestamp <= end:
        report.add(
            ERROR, 'timestamp', settings.ann_file, row.line,
            f'timestamp {row.timestamp} is outside [timestamp_start, '
            f'timestamp_end] = [{start}, {end}]; mmaction2 would clamp '
            'the clip to the first/last frame and show the wrong '
            'moment', 'fix the timestamp or set timestamp_start/'
            'timestamp_end to the time range of the frames')


def check_action_id(row: AnnotationRow, settings: DatasetSettings,
                    label_map: Optional[LabelMap],
                    report: SplitReport) -> bool:
    """Action ids are known classes; False when the loader skips the row
    (an id outside ``custom_classes``)."""
    path, action_id = settings.ann_file, row.action_id
    if action_id < 1:
        report.add(
            ERROR, 'action id', path, row.line,
            f'action id {action_id}: ids start at 1 (column 0 is '
            'ignored by the heads and the metric)',
            'number the classes from 1 in the CSV and the pbtxt')
        return True
    if label_map is not None and action_id not in label_map.names:
        report.add(
            ERROR, 'action id', path, row.line,
            f'action id {action_id} is not in the label map '
            f'{settings.label_file}',
            'add an item for it to the pbtxt or fix the id '
            '(AVAMetric ignores ids missing from the label map)')
    if settings.custom_classes is not None:
        return action_id in settings.custom_classes
    if action_id >= settings.num_classes:
        report.add(
            ERROR, 'action id', path, row.line,
            f'action id {action_id} >= num_classes '
            f'{settings.num_classes} (AVADataset fails with an '
            'IndexError)',
            'num_classes must be the largest id + 1: set it in the '
            'datasets, model.action_head and the evaluators, or use '
            'custom_classes')
    return True


def check_duplicates(rows: Sequence[AnnotationRow], path: str,
                     report: SplitReport) -> None:
    """Repeated rows, and one entity with two boxes at one keyframe."""
    first_line: Dict[tuple, int] = {}
    entity_boxes: Dict[tuple, Tuple[tuple, int]] = {}
    for row in rows:
        key = (row.video_id, row.timestamp, row.box, row.action_id,
               row.entity_id)
        if key in first_line:
            report.add(
                WARNING, 'duplicate row', path, row.line,
                f'same as line {first_line[key]}: training ignores '
                'it, but AVAMetric counts it as one more '
                'ground-truth box that can never be matched',
                'delete the repeated row')
            continue
        first_line[key] = row.line
        entity = (row.video_id, row.timestamp, row.entity_id)
        box, line = entity_boxes.setdefault(entity, (row.box, row.line))
        if box != row.box:
            report.add(
                WARNING, 'duplicate row', path, row.line,
                f'entity {row.entity_id} already has another box at '
                f'{row.video_id},{row.timestamp} (line {line}); '
                'mmaction2 treats different boxes as different '
                'actors', 'give one person one box per keyframe')


def read_excluded(settings: DatasetSettings, video_ids: Set[str],
                  report: SplitReport) -> Set[Tuple[str, int]]:
    """Parse the excluded-timestamps file like ``AVADataset.filter_data``.

    Returns the excluded (video_id, timestamp) keys.
    """
    path, excluded = settings.exclude_file, set()
    unknown: Dict[str, int] = {}
    for lineno, line in enumerate(_csv_lines(path), 1):
        parts = line.strip().split(',')
        if len(parts) != 2:
            report.add(
                ERROR, 'excluded timestamps', path, lineno,
                f'{_columns(len(parts))}, expected 2 '
                '(video_id,timestamp); AVADataset fails on this '
                'line', 'write `video_id,timestamp`; no blank lines '
                'or header')
            continue
        timestamp = _number(parts[1], int)
        if timestamp is None:
            report.add(ERROR, 'excluded timestamps', path, lineno,
                       f'timestamp {parts[1]!r} is not an integer',
                       'write whole seconds, e.g. 0902')
            continue
        excluded.add((parts[0], timestamp))
        if parts[0] not in video_ids:
            unknown.setdefault(parts[0], lineno)
    for video_id, lineno in unknown.items():
        report.add(
            WARNING, 'excluded timestamps', path, lineno,
            f'video {video_id!r} has no row in {settings.ann_file}',
            'check that this is the exclusion file of the same '
            'split')
    return excluded


# --------------------------------------------------------------------------
# frames
# --------------------------------------------------------------------------


def clip_frame_indices(timestamp: int,
                       settings: DatasetSettings,
                       total_frames: Optional[int] = None
                       ) -> Tuple[np.ndarray, bool]:
    """Every frame file index the clip of a keyframe can use.

    Reproduces ``SampleAVAFrames.transform`` with ``shot_info = (0,
    fps * (timestamp_end - timestamp_start))`` as ``AVADataset`` sets it for
    raw frames: the centre is ``fps * (timestamp - timestamp_start) +
    start_index``; indices are clamped to the shot, then ``start_index`` is
    added (a second time). In training mode each index is also shifted by
    a random offset in ``[-ceil(interval / 2), ceil(interval / 2) - 1]``;
    all of them are returned. Without ``clip_len`` only the keyframe index.
    With ``total_frames`` (the video's own frame count, as ``RawFrameInit``
    sets it) the shot is ``[0, total_frames)`` and file numbers start at
    ``settings.frame_first_index``.

    Returns:
        (sorted unique indices, whether the clip reaches outside the shot
        and is padded with repeated edge frames).
    """
    s = settings
    shot_end = s.fps * (s.timestamp_end - s.timestamp_start)
    file_offset = s.start_index
    if total_frames is not None:
        shot_end, file_offset = total_frames, s.start_index + (
            s.frame_first_index or 0)
    center = s.fps * (timestamp - s.timestamp_start) + s.start_index
    if s.clip_len is None:
        indices = np.array([center])
    else:
        start = center - (s.clip_len // 2) * s.frame_interval
        end = center + ((s.clip_len + 1) // 2) * s.frame_interval
        indices = np.arange(start, end, s.frame_interval)
        if not s.sampler_test_mode:
            jitter = np.arange(-s.frame_interval // 2,
                               (s.frame_interval + 1) // 2)
            indices = (indices[:, None] + jitter[None]).ravel()
    padded = bool(indices.min() < 0 or indices.max() > shot_end - 1)
    indices = np.clip(indices, 0, shot_end - 1).astype(np.int64)
    return np.unique(indices + file_offset), padded


def _frame_exists(frame_dir: str, name: str, on_disk: Set[str]) -> bool:
    """Whether ``frame_dir/name`` exists (``on_disk``: the folder's
    listing, used unless the template names a sub-folder)."""
    if os.sep in name:
        return osp.isfile(osp.join(frame_dir, name))
    return name in on_disk


def check_frames(keyframes: Dict[Tuple[str, int], int],
                 settings: DatasetSettings, report: SplitReport) -> None:
    """Every frame the clips of ``keyframes`` need exists on disk.

    Args:
        keyframes: (video_id, timestamp) -> first CSV line of the keyframe.
    """
    by_video: Dict[str, List[Tuple[int, int]]] = defaultdict(list)
    for (video_id, timestamp), line in sorted(keyframes.items()):
        by_video[video_id].append((timestamp, line))
    for video_id, stamps in by_video.items():
        frame_dir = osp.join(settings.frame_root, video_id)
        if not osp.isdir(frame_dir):
            report.add(
                ERROR, 'frames', settings.ann_file, stamps[0][1],
                f'frame folder {frame_dir} of video {video_id!r} '
                'does not exist',
                'extract the frames to <frame root>/<video_id>/ or '
                'fix data_prefix.img')
            continue
        on_disk = set(os.listdir(frame_dir))
        total = None
        if settings.frame_first_index is not None:
            # set from a config whose pipeline has RawFrameInit: count as it
            from evad_mm.datasets.transforms import count_frame_files
            total = count_frame_files(on_disk, settings.filename_tmpl,
                                      settings.frame_first_index)
            if total == 0:
                first = settings.filename_tmpl.format(
                    settings.frame_first_index)
                report.add(
                    ERROR, 'frames', settings.ann_file, stamps[0][1],
                    f'{frame_dir} has no first frame {first}',
                    'name the frames as filename_tmpl and '
                    'RawFrameInit(first_index=...) say')
                continue
        present: Dict[int, bool] = {}  # frame index -> file exists
        for timestamp, line in stamps:
            keyframe = settings.fps * (timestamp - settings.timestamp_start)
            if total is not None and not 0 <= keyframe < total:
                first = settings.frame_first_index
                gap = settings.filename_tmpl.format(first + total)
                key_file = settings.filename_tmpl.format(first + keyframe)
                report.add(
                    ERROR, 'frames', settings.ann_file, line,
                    f'{video_id},{timestamp:04d}: keyframe file {key_file}'
                    f' is past the {total} frames numbered without gaps '
                    f'in {frame_dir} ({gap} is missing)',
                    'extract every frame, numbered without gaps')
                continue
            indices, padded = clip_frame_indices(timestamp, settings, total)
            for index in indices.tolist():
                if index not in present:
                    present[index] = _frame_exists(
                        frame_dir, settings.filename_tmpl.format(index),
                        on_disk)
            missing = [
                settings.filename_tmpl.format(index)
                for index in indices.tolist() if not present[index]
            ]
            if missing:
                shown = ', '.join(missing[:3])
                more = f' and {len(missing) - 3} more' if len(missing) > 3 \
                    else ''
                report.add(
                    ERROR, 'frames', settings.ann_file, line,
                    f'{video_id},{timestamp:04d}: {len(missing)} of '
                    f'the {len(indices)} frames its clip can read are '
                    f'missing in {frame_dir}: {shown}{more}',
                    f'the clip reads files {indices[0]}..'
                    f'{indices[-1]} ({settings.filename_tmpl!r}): '
                    'extract them, or fix fps/timestamp_start/'
                    'start_index')
            elif padded:
                report.add(
                    WARNING, 'clip padding', settings.ann_file, line,
                    f'{video_id},{timestamp:04d}: the clip reaches '
                    'outside [timestamp_start, timestamp_end) and '
                    'mmaction2 repeats the edge frame',
                    'fine at the ends of a video; otherwise check '
                    'timestamp_start/timestamp_end')


# --------------------------------------------------------------------------
# settings
# --------------------------------------------------------------------------


def _check_file(path: Optional[str],
                what: str,
                settings: DatasetSettings,
                report: SplitReport,
                required: bool = False) -> bool:
    """A configured file exists; True when it can be read."""
    if path is None:
        if required:
            report.add(ERROR, 'settings', settings.source, None,
                       f'no {what} given', f'set {what}')
        return False
    if not osp.isfile(path):
        report.add(
            ERROR, 'settings', settings.source, None,
            f'{what} {path} does not exist',
            'fix the path (relative paths start from the working '
            'directory)')
        return False
    return True


def check_settings(settings: DatasetSettings,
                   report: SplitReport) -> Dict[str, bool]:
    """Numbers and files of the settings.

    Returns:
        dict: Which inputs the other checks can use: ``ann``, ``exclude``,
        ``label`` (the files exist) and ``frames`` (the numbers of the frame
        arithmetic and the frame folder are valid).
    """
    s, src = settings, settings.source
    errors_before = report.count(ERROR)

    def error(message: str, hint: str) -> None:
        report.add(ERROR, 'settings', src, None, f'[{s.split}] {message}',
                   hint)

    for name in ('fps', 'timestamp_start', 'timestamp_end', 'start_index',
                 'num_classes'):
        if not isinstance(getattr(s, name), int):
            error(f'{name}={getattr(s, name)!r} must be an integer',
                  f'set {name} to an integer')
            return dict(ann=False, frames=False)
    if s.fps < 1:
        error(f'fps={s.fps} must be >= 1', 'set fps to the frame rate')
    if s.timestamp_end <= s.timestamp_start:
        error(
            f'timestamp_end={s.timestamp_end} <= timestamp_start='
            f'{s.timestamp_start}', 'timestamp_end must be later')
    if s.clip_len is not None and (s.clip_len < 1 or s.frame_interval < 1):
        error(
            f'clip_len={s.clip_len}, frame_interval={s.frame_interval} '
            'must be >= 1', 'fix SampleAVAFrames')
    if s.num_classes < 2:
        error(f'num_classes={s.num_classes} must count column 0 too',
              'use the largest action id + 1')
    try:
        s.filename_tmpl.format(1)
    except (IndexError, KeyError, ValueError) as exc:
        error(f'filename_tmpl={s.filename_tmpl!r} fails: {exc!r}',
              "use a template like 'img_{:05}.jpg'")
    frames_ok = report.count(ERROR) == errors_before
    if s.model_num_classes is not None and \
            s.model_num_classes != s.num_classes:
        error(
            f'model.action_head.num_classes={s.model_num_classes} but '
            f'the dataset has num_classes={s.num_classes}',
            'set both to the same value')
    usable = dict(
        ann=_check_file(s.ann_file, 'ann_file', s, report, required=True),
        exclude=_check_file(s.exclude_file, 'exclude_file', s, report),
        label=_check_file(s.label_file, 'label_file', s, report),
        frames=frames_ok)
    _check_file(s.proposal_file, 'proposal_file', s, report)
    if s.label_file is None:
        report.add(
            WARNING, 'settings', src, None,
            f'[{s.split}] no label_file: action ids are not checked '
            'against a label map', 'set label_file (AVAMetric '
            'needs it)')
    if not osp.isdir(s.frame_root or '.'):
        error(
            f'frame folder {s.frame_root} does not exist',
            'set data_prefix.img (or --frame-dir) to the folder holding '
            '<video_id>/ frame folders')
        usable['frames'] = False
    return usable


def check_classes(settings: DatasetSettings, label_map: Optional[LabelMap],
                  report: SplitReport) -> None:
    """``custom_classes`` as ``AVADataset`` asserts it; label ids that the
    model cannot predict."""
    s, src = settings, settings.source
    if s.custom_classes is not None:
        custom = list(s.custom_classes)
        if 0 in custom:
            report.add(ERROR, 'settings', src, None,
                       f'[{s.split}] custom_classes contains 0',
                       'list action ids only (0 is the unused column)')
        if len(custom) != len(set(custom)):
            report.add(ERROR, 'settings', src, None,
                       f'[{s.split}] custom_classes repeats an id',
                       'list each id once')
        if s.num_classes != len(custom) + 1:
            report.add(
                ERROR, 'settings', src, None,
                f'[{s.split}] num_classes={s.num_classes} but '
                f'custom_classes has {len(custom)} ids',
                f'set num_classes={len(custom) + 1} '
                '(len(custom_classes) + 1) in the datasets, '
                'model.action_head and the evaluators')
        if label_map is not None:
            unknown = sorted(set(custom) - set(label_map.names))
            if unknown:
                report.add(
                    ERROR, 'settings', src, None,
                    f'[{s.split}] custom_classes {unknown} are not '
                    f'in the label map {s.label_file}',
                    'custom_classes must be a subset of the label '
                    'ids')
    elif label_map is not None:
        too_big = sorted(i for i in label_map.names if i >= s.num_classes)
        if too_big:
            report.add(
                WARNING, 'settings', src, None,
                f'[{s.split}] label ids {too_big[:10]} >= '
                f'num_classes {s.num_classes}: the model cannot '
                'predict them, yet AVAMetric evaluates them',
                'raise num_classes or use custom_classes')
    _check_evaluator(settings, report)


def _check_evaluator(settings: DatasetSettings, report: SplitReport) -> None:
    """The split's ``AVAMetric`` reads the same files and classes."""
    metric, s = settings.evaluator, settings
    if not metric or str(metric.get('type', '')).split('.')[-1] != \
            'AVAMetric':
        return
    for key, ours in (('ann_file', s.ann_file),
                      ('exclude_file', s.exclude_file), ('label_file',
                                                         s.label_file)):
        theirs = metric.get(key)
        if theirs is not None and ours is not None and \
                osp.abspath(theirs) != osp.abspath(ours):
            report.add(
                WARNING, 'settings', s.source, None,
                f'[{s.split}] the evaluator reads {key}={theirs} '
                f'but the dataset reads {ours}', 'point both at the same file')
    metric_classes = metric.get('num_classes', 81)
    metric_custom = metric.get('custom_classes')
    metric_custom = None if metric_custom is None else list(metric_custom)
    ours_custom = None if s.custom_classes is None else \
        list(s.custom_classes)
    if metric_classes != s.num_classes or metric_custom != ours_custom:
        report.add(
            ERROR, 'settings', s.source, None,
            f'[{s.split}] the evaluator has num_classes='
            f'{metric_classes}, custom_classes={metric_custom}; the '
            f'dataset num_classes={s.num_classes}, custom_classes='
            f'{ours_custom}', 'use the same values in '
            f'{s.split}_evaluator')


def check_coverage(settings: DatasetSettings, label_map: Optional[LabelMap],
                   examples: Counter, report: SplitReport) -> Tuple[int, int]:
    """Warn about classes without examples; return (with, without)."""
    if settings.custom_classes is not None:
        classes = list(settings.custom_classes)
    elif label_map is not None:
        classes = sorted(i for i in label_map.names
                         if 0 < i < settings.num_classes)
    else:
        classes = list(range(1, settings.num_classes))
    without = [c for c in classes if not examples.get(c)]
    for class_id in without:
        path, line = settings.source, None
        name = ''
        if label_map is not None and class_id in label_map.names:
            path = settings.label_file
            line = label_map.id_lines[class_id]
            name = f' {label_map.names[class_id]!r}'
        report.add(
            WARNING, 'no examples', path, line,
            f'class {class_id}{name} has no example in the '
            f'{settings.split} split',
            'add annotations, or leave it out with custom_classes')
    return len(classes) - len(without), len(without)


# --------------------------------------------------------------------------
# one split
# --------------------------------------------------------------------------


def check_split(settings: DatasetSettings,
                check_frame_files: bool = True) -> SplitReport:
    """Run every check on one data set."""
    report = SplitReport(settings)
    report.stats = dict(
        videos=0,
        keyframes=0,
        excluded=0,
        boxes=0,
        rows=0,
        skipped_rows=0,
        with_examples=0,
        without_examples=0)
    usable = check_settings(settings, report)
    label_map = check_label_map(settings.label_file, report) \
        if usable.get('label') else None
    check_classes(settings, label_map, report)
    if not usable.get('ann'):
        return report
    rows: List[AnnotationRow] = []
    lines = _csv_lines(settings.ann_file)
    report.stats['rows'] = len(lines)
    for lineno, line in enumerate(lines, 1):
        row = parse_annotation_line(line, lineno, settings, report)
        if row is not None:
            rows.append(row)
    kept, good_boxes = [], []
    for row in rows:
        if check_box(row, settings.ann_file, report):
            good_boxes.append(row)
        check_timestamp(row, settings, report)
        if check_action_id(row, settings, label_map, report):
            kept.append(row)
    report.stats['skipped_rows'] = len(rows) - len(kept)
    check_duplicates(good_boxes, settings.ann_file, report)
    excluded = read_excluded(settings, {r.video_id for r in rows}, report) \
        if usable.get('exclude') else set()
    keyframes: Dict[Tuple[str, int], int] = {}
    boxes, examples = set(), Counter()
    for row in kept:
        key = (row.video_id, row.timestamp)
        if key in excluded:
            continue
        keyframes.setdefault(key, row.line)
        boxes.add(key + (row.box, ))
        examples[row.action_id] += 1
    annotated = {(row.video_id, row.timestamp) for row in kept}
    videos = {video_id for video_id, _ in keyframes}
    report.stats.update(
        videos=len(videos),
        keyframes=len(keyframes),
        excluded=len(annotated & excluded),
        boxes=len(boxes))
    with_examples, without = check_coverage(settings, label_map, examples,
                                            report)
    report.stats.update(with_examples=with_examples, without_examples=without)
    if check_frame_files and usable['frames']:
        if settings.clip_len is None:
            report.add(
                WARNING, 'settings', settings.source, None,
                f'[{settings.split}] no SampleAVAFrames clip_len: '
                "only each keyframe's own frame is checked",
                'give --clip-len and --frame-interval')
        check_frames(keyframes, settings, report)
    return report


# --------------------------------------------------------------------------
# settings from a config or the command line
# --------------------------------------------------------------------------


def _find_step(pipeline: Sequence[dict], name: str) -> Optional[dict]:
    """The first step of type ``name`` in a pipeline, if any."""
    for step in pipeline or ():
        if str(step.get('type', '')).split('.')[-1] == name:
            return step
    return None


def _join_root(data_root: str, path: Optional[str]) -> Optional[str]:
    """mmengine's ``BaseDataset._join_prefix`` for one path."""
    if path and data_root and not osp.isabs(path):
        return osp.join(data_root, path)
    return path


def settings_from_config(
        cfg, split: str,
        source: str) -> Tuple[Optional[DatasetSettings], Optional[str]]:
    """Settings of ``{split}_dataloader.dataset``; or (None, reason)."""
    loader = cfg.get(f'{split}_dataloader')
    if not loader or 'dataset' not in loader:
        return None, f'the config has no {split}_dataloader.dataset'
    dataset = loader['dataset']
    while 'dataset' in dataset and 'ann_file' not in dataset:
        dataset = dataset['dataset']  # e.g. RepeatDataset
    dataset_type = str(dataset.get('type', '')).split('.')[-1]
    if dataset_type != 'AVADataset':
        return None, (f'{split}_dataloader.dataset is a {dataset_type!r}, '
                      'not an AVADataset')
    values = {k: dataset.get(k, v) for k, v in DATASET_DEFAULTS.items()}
    data_root = dataset.get('data_root', '') or ''
    prefix = (dataset.get('data_prefix') or {}).get('img', '')
    sampler = _find_step(dataset.get('pipeline'), 'SampleAVAFrames')
    frame_counter = _find_step(dataset.get('pipeline'), 'RawFrameInit')
    model = cfg.get('model') or {}
    head = model.get('action_head') or {}
    if values['custom_classes'] is not None:
        values['custom_classes'] = list(values['custom_classes'])
    settings = DatasetSettings(
        split=split,
        source=source,
        ann_file=_join_root(data_root, dataset.get('ann_file')),
        frame_root=_join_root(data_root, prefix),
        model_num_classes=head.get('num_classes'),
        evaluator=cfg.get(f'{split}_evaluator') if split != 'train' else None,
        **values)
    if sampler is not None:
        settings.clip_len = sampler.get('clip_len')
        settings.frame_interval = sampler.get('frame_interval',
                                              SAMPLER_DEFAULT_FRAME_INTERVAL)
        settings.sampler_test_mode = bool(sampler.get('test_mode', False))
    if frame_counter is not None:
        settings.frame_first_index = int(frame_counter.get('first_index', 1))
    return settings, None


OVERRIDES = {
    'ann_file': 'ann_file',
    'exclude_file': 'exclude_file',
    'label_file': 'label_file',
    'frame_dir': 'frame_root',
    'fps': 'fps',
    'timestamp_start': 'timestamp_start',
    'timestamp_end': 'timestamp_end',
    'clip_len': 'clip_len',
    'frame_interval': 'frame_interval',
    'num_classes': 'num_classes',
    'custom_classes': 'custom_classes',
    'filename_tmpl': 'filename_tmpl',
    'start_index': 'start_index',
}


def apply_overrides(settings: DatasetSettings,
                    args: argparse.Namespace) -> DatasetSettings:
    """Options given on the command line replace the config's values."""
    changes = {
        attr: getattr(args, option)
        for option, attr in OVERRIDES.items()
        if getattr(args, option) is not None
    }
    if args.test_mode:
        changes['sampler_test_mode'] = True
    return replace(settings, **changes)


def settings_from_args(args: argparse.Namespace) -> DatasetSettings:
    """One data set described by the options alone."""
    settings = DatasetSettings(
        split=args.split or 'train',
        source='<command line>',
        ann_file=args.ann_file,
        frame_root=args.frame_dir or '')
    return apply_overrides(settings, args)


def collect_settings(args: argparse.Namespace,
                     notes: List[str]) -> List[DatasetSettings]:
    """The data sets to check, from the config and/or the options."""
    if args.config is None:
        return [settings_from_args(args)]
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    import evad_mm  # noqa: F401  (registers the plugin, applies the shims)
    from mmengine.config import Config
    cfg = Config.fromfile(args.config)
    splits = SPLITS if args.split in (None, 'all') else (args.split, )
    found = []
    for split in splits:
        settings, reason = settings_from_config(cfg, split, args.config)
        if settings is None:
            notes.append(f'{split}: not checked, {reason}')
        else:
            found.append(apply_overrides(settings, args))
    return found


# --------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------


def format_summary(reports: Sequence[SplitReport]) -> str:
    """A per-split table of counts."""
    header = ('split', 'videos', 'keyframes', 'excluded', 'boxes', 'rows',
              'classes w/ ex.', 'w/o ex.', 'errors', 'warnings')
    table, twins = [header], []
    for r in reports:
        if r.same_as:
            twins.append(f'{r.settings.split}: the same data set and '
                         f'evaluator as {r.same_as}, checked once')
            continue
        st = r.stats
        table.append(
            (r.settings.split, st['videos'], st['keyframes'], st['excluded'],
             st['boxes'], st['rows'], st['with_examples'],
             st['without_examples'], r.count(ERROR), r.count(WARNING)))
    widths = [
        max(len(str(row[i])) for row in table) for i in range(len(header))
    ]
    lines = []
    for row in table:
        lines.append('  '.join(
            str(cell).ljust(w) if i == 0 else str(cell).rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
    lines.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(lines + twins)


def format_problems(problems: Sequence[Problem], max_shown: int) -> str:
    """Problems grouped by level and kind, at most ``max_shown`` each."""
    groups: Dict[Tuple[str, str], List[Problem]] = defaultdict(list)
    for problem in problems:
        groups[(problem.level, problem.kind)].append(problem)
    lines = []
    for level in (ERROR, WARNING):
        for (lvl, kind), group in groups.items():
            if lvl != level:
                continue
            lines.append(f'\n{level}s: {kind} ({len(group)})')
            lines.extend('  ' + p.format() for p in group[:max_shown])
            if len(group) > max_shown:
                lines.append(f'  ... and {len(group) - max_shown} more')
    return '\n'.join(lines)


def _signature(settings: DatasetSettings) -> DatasetSettings:
    """Settings without the split name, to spot splits checked twice."""
    return replace(settings, split='', evaluator=None)


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------


def _int_list(text: str) -> List[int]:
    """``'1,3,7'`` -> [1, 3, 7]."""
    try:
        return [int(v) for v in text.replace(' ', '').split(',') if v]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'{text!r} is not a comma-separated list of integers')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description='Check an AVA-format data set (annotation CSV, excluded '
        'timestamps, pbtxt label map, raw frames) the way mmaction2 reads '
        'it. Exit code 1 when there is an error.')
    parser.add_argument(
        'config',
        nargs='?',
        help='mmengine config whose train/val/test '
        'dataloaders use AVADataset; omit it to describe one data set with '
        'the options below')
    parser.add_argument(
        '--split',
        choices=SPLITS + ('all', ),
        help='with a config: the '
        'split(s) to check (default: all); without: the name of the data '
        'set (default: train)')
    parser.add_argument(
        '--max-shown',
        type=int,
        default=DEFAULT_MAX_SHOWN,
        help='problems shown per kind (default: %(default)s)')
    parser.add_argument(
        '--skip-frames',
        action='store_true',
        help='do not look for the frame files')
    data = parser.add_argument_group(
        'data set', 'without a config: the data set; with a config: values '
        'that replace the config\'s in every split')
    data.add_argument('--ann-file', help='annotation CSV')
    data.add_argument('--exclude-file', help='excluded-timestamps CSV')
    data.add_argument('--label-file', help='pbtxt label map')
    data.add_argument(
        '--frame-dir',
        help='folder of <video_id>/ frame '
        'folders (data_prefix.img)')
    data.add_argument(
        '--filename-tmpl',
        help="frame file names (default "
        "'img_{:05}.jpg')")
    data.add_argument(
        '--start-index',
        type=int,
        help='index of the first frame file (default 1)')
    data.add_argument(
        '--fps', type=int, help='frames per second (default '
        '30)')
    data.add_argument(
        '--timestamp-start',
        type=int,
        help='time of the first frame (default 900)')
    data.add_argument(
        '--timestamp-end',
        type=int,
        help='end of the frames\' time range (default 1800)')
    data.add_argument(
        '--clip-len',
        type=int,
        help='SampleAVAFrames '
        'clip_len (default: check only the keyframes)')
    data.add_argument(
        '--frame-interval',
        type=int,
        help='SampleAVAFrames frame_interval (default 2)')
    data.add_argument(
        '--test-mode',
        action='store_true',
        help='sample clips without the training jitter')
    data.add_argument(
        '--num-classes',
        type=int,
        help='classes including column 0 (default 81)')
    data.add_argument(
        '--custom-classes',
        type=_int_list,
        help='comma-separated action ids to train on')
    args = parser.parse_args(argv)
    if args.config is None:
        if args.ann_file is None:
            parser.error('give a CONFIG or --ann-file')
        if args.split == 'all':
            parser.error('--split all needs a CONFIG')
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Check the data set(s); print a summary and the problems.

    Returns:
        int: 1 if there is an error, else 0.
    """
    args = parse_args(argv)
    notes: List[str] = []
    reports: List[SplitReport] = []
    checked: Dict[str, DatasetSettings] = {}
    for settings in collect_settings(args, notes):
        twin = next((split for split, other in checked.items()
                     if _signature(other) == _signature(settings)), None)
        if twin is not None and settings.evaluator == \
                checked[twin].evaluator:
            reports.append(SplitReport(settings, same_as=twin))
            continue
        checked[settings.split] = settings
        reports.append(check_split(settings, not args.skip_frames))
    source = args.config or args.ann_file
    print(f'AVA data set check: {source}')
    for note in notes:
        print(f'  note: {note}')
    if not reports:
        print('error: nothing to check')
        return 1
    print(format_summary(reports))
    for report in reports:
        skipped = report.stats.get('skipped_rows')
        if skipped:
            print(f'  note: {report.settings.split}: {skipped} rows have '
                  'ids outside custom_classes and are skipped by '
                  'AVADataset')
    # splits sharing a label map report its problems once
    problems = list(dict.fromkeys(p for r in reports for p in r.problems))
    print(format_problems(problems, args.max_shown))
    errors = sum(p.level == ERROR for p in problems)
    warnings = len(problems) - errors
    verdict = 'FAILED' if errors else 'OK'
    print(f'\n{verdict}: {errors} errors, {warnings} warnings')
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main())
