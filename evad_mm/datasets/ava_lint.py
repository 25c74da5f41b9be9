"""Line-numbered checks of the files mmaction2's ``AVADataset`` reads.

Only what ``AVADataset`` (mmaction2 1.2), ``read_labelmap`` and
``AVAMetric`` would crash on, or would silently drop or misread, is checked
here, at its line; everything else is read by the dataset itself (see
:mod:`evad_mm.datasets.ava_check`).
"""
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Set, Tuple

ERROR, WARNING = 'error', 'warning'
CSV_COLUMNS = ('video_id', 'timestamp', 'x1', 'y1', 'x2', 'y2', 'action_id',
               'entity_id')
# the numbers of a CSV row: columns, how AVADataset converts them, the fix
NUMBER_COLUMNS = (('timestamp', slice(1, 2), int,
                   'write whole seconds (or frames with fps=1), e.g. 0902'),
                  ('box', slice(2, 6), float,
                   'write x1,y1,x2,y2 as decimal numbers'),
                  ('action_id', slice(6, 7), int,
                   'write action_id as an integer'),
                  ('entity_id', slice(7, 8), int,
                   'write entity_id as an integer'))
LABEL_FIELDS = ('name', 'id', 'label_id')  # as read_labelmap knows them


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


class Problems(List[Problem]):
    """The findings of one check, in the order they were made."""

    def add(self,
            level: str,
            kind: str,
            path: str,
            line: Optional[int],
            message: str,
            hint: str = '') -> None:
        """Record one problem."""
        self.append(Problem(level, kind, path, line, message, hint))

    def count(self, level: str = ERROR) -> int:
        """Number of problems of ``level``."""
        return sum(p.level == level for p in self)


@dataclass
class LabelMap:
    """Class names by id, as ``read_labelmap`` gives them, and the line of
    each id in the pbtxt."""

    names: Dict[int, str] = field(default_factory=dict)
    lines: Dict[int, int] = field(default_factory=dict)


@dataclass
class AnnotationIndex:
    """What the annotation lint learnt about a CSV."""

    rows: int = 0
    keyframe_lines: Dict[Tuple[str, int], int] = field(default_factory=dict)
    skipped_rows: int = 0  # ids outside custom_classes, dropped by the loader


def _columns(count: int) -> str:
    """'1 column', '7 columns'."""
    return f'{count} column' + ('s' if count != 1 else '')


def _read_lines(path: str) -> List[str]:
    """Lines as ``AVADataset`` reads them (text mode, universal newlines)."""
    with open(path, encoding='utf-8') as f:
        return [line.rstrip('\n\r') for line in f]


def lint_label_map(path: str, problems: Problems) -> Optional[LabelMap]:
    """Check a pbtxt label map; return it as mmaction2 reads it.

    ``read_labelmap`` only reads lines starting with ``'  name:'`` and
    ``'  id:'`` / ``'  label_id:'`` (two spaces) and adds a class at each id
    line, with the last name read: other indentations are skipped, an item
    without an id is lost, and an id before its name takes the previous
    item's name.

    Returns:
        LabelMap | None: None when the file has errors or no classes.
    """
    from mmaction.evaluation.functional.ava_utils import read_labelmap
    before = problems.count()
    lines = _read_lines(path)
    item_line, fields, id_lines = None, [], {}

    def error(line: Optional[int], message: str, hint: str) -> None:
        problems.add(ERROR, 'label map', path, line, message, hint)

    def close_item() -> None:
        if not any(name != 'name' for name in fields):
            error(item_line, 'item has no `id:` line, so mmaction2 skips it',
                  'add `  id: <integer>` after the name')
        elif fields[0] != 'name':
            error(
                item_line, 'item has no `name:` before its `id:`: mmaction2 '
                'pairs an id with the name read before it, so names shift',
                'put `  name: "<class name>"` first in every item')
        elif len(fields) != 2:
            error(item_line, 'item has more than one name or id',
                  'one `name:` and one `id:` per item')

    for lineno, line in enumerate(lines, 1):
        stripped = line.strip()
        name = next((n for n in LABEL_FIELDS if stripped.startswith(n + ':')),
                    None)
        if stripped.endswith('{'):
            item_line, fields = lineno, []
        elif stripped == '}' and item_line is not None:
            close_item()
            item_line = None
        if name is None:
            continue
        fields.append(name)
        if not line.startswith(f'  {name}:'):
            error(
                lineno, f'`{name}:` is indented by '
                f'{len(line) - len(line.lstrip())} characters; mmaction2\'s '
                'read_labelmap only reads lines starting with exactly two '
                'spaces and ignores this one',
                f'indent it with two spaces: `  {stripped}`')
        elif name == 'name' and line.count('"') < 2:
            error(
                lineno, 'the name is not in double quotes '
                "(mmaction2's read_labelmap fails on it)",
                'write `  name: "<class name>"`')
        elif name != 'name':
            value = stripped.split(' ')[-1]
            if not value.lstrip('-').isdecimal():
                error(lineno, f'id {value!r} is not an integer',
                      'write `  id: <integer>`')
            elif int(value) in id_lines:
                error(
                    lineno, f'id {value} is used twice (first at line '
                    f'{id_lines[int(value)]})', 'give every class its own id')
            elif int(value) < 1:
                error(
                    lineno, f'id {value}: AVA ids start at 1 (column 0 of '
                    'the label vector is ignored by the heads and the '
                    'metric)', 'number the classes from 1')
            else:
                id_lines[int(value)] = lineno
    if problems.count() > before:
        return None
    with open(path) as f:
        items, _ = read_labelmap(f)
    if not items:
        error(None, 'no `item { name: ... id: ... }` entries',
              'write one item per class, see the AVA pbtxt format')
        return None
    return LabelMap({item['id']: item['name'] for item in items}, id_lines)


def _parse_row(parts: List[str], lineno: int, path: str, split: str,
               problems: Problems) -> Optional[tuple]:
    """(video_id, timestamp, box, action_id, entity_id) of one CSV row as
    ``AVADataset.load_data_list`` parses it, or None where it fails."""

    def error(message: str, hint: str) -> None:
        problems.add(ERROR, 'csv schema', path, lineno, message, hint)

    if len(parts) < len(CSV_COLUMNS):
        error(
            f'{_columns(len(parts))}, expected 8: {",".join(CSV_COLUMNS)} '
            '(AVADataset reads the entity id from column 8)',
            'add the missing columns; entity_id numbers the person track')
        return None
    if len(parts) > len(CSV_COLUMNS):
        problems.add(
            WARNING if split == 'train' else ERROR, 'csv schema', path, lineno,
            f'{_columns(len(parts))}, expected 8: AVADataset ignores '
            'the extra ones but AVAMetric rejects rows with more than 8',
            'keep only the 8 AVA columns')
    values = []
    for name, columns, kind, hint in NUMBER_COLUMNS:
        text = ','.join(parts[columns])
        try:
            values.append([kind(v) for v in parts[columns]])
        except ValueError:
            header = lineno == 1 and not any(c.isdigit() for c in text)
            error(
                f'{name} {text!r} is not '
                f'{"an integer" if kind is int else "four numbers"} '
                f'(AVADataset reads it with {kind.__name__}())',
                'remove the header line' if header else hint)
            return None
    (timestamp, ), box, (action_id, ), (entity_id, ) = values
    if not parts[0]:
        error('empty video_id', 'write the name of the frame folder')
        return None
    return parts[0], timestamp, tuple(box), action_id, entity_id


def _box_problem(box: Tuple[float, ...]) -> Optional[Tuple[str, str]]:
    """(message, hint) when a box is not finite, normalised and non-empty;
    ``AVADataset`` takes any four numbers."""
    text = ','.join(f'{v:g}' for v in box)
    x1, y1, x2, y2 = box
    if not all(math.isfinite(v) for v in box):
        return f'box ({text}) is not finite', 'write real coordinates'
    if min(box) < 0 or max(box) > 1:
        return (f'box ({text}) is outside [0, 1]',
                'boxes are normalised: divide x by the frame width and y by '
                'its height, then clip to [0, 1]')
    if not (x1 < x2 and y1 < y2):
        return (f'box ({text}) needs x1 < x2 and y1 < y2',
                'columns are x1,y1,x2,y2 (top-left, bottom-right)')
    return None


def _action_id_problem(action_id: int, num_classes: int,
                       custom_classes: Optional[Sequence[int]],
                       label_map: Optional[LabelMap],
                       label_file: Optional[str]) -> List[Tuple[str, str]]:
    """(message, hint) pairs for an action id the loader or the metric
    misreads."""
    if action_id < 1:
        return [(f'action id {action_id}: ids start at 1 (column 0 is '
                 'ignored by the heads and the metric)',
                 'number the classes from 1 in the CSV and the pbtxt')]
    found = []
    if label_map is not None and action_id not in label_map.names:
        found.append((f'action id {action_id} is not in the label map '
                      f'{label_file}', 'add an item for it to the pbtxt or '
                      'fix the id (AVAMetric ignores ids missing from the '
                      'label map)'))
    if custom_classes is None and action_id >= num_classes:
        found.append((f'action id {action_id} >= num_classes {num_classes} '
                      '(AVADataset fails with an IndexError)',
                      'num_classes must be the largest id + 1: set it in the '
                      'datasets, model.action_head and the evaluators, or '
                      'use custom_classes'))
    return found


def lint_annotations(path: str,
                     problems: Problems,
                     split: str = 'train',
                     num_classes: int = 81,
                     custom_classes: Optional[Sequence[int]] = None,
                     label_map: Optional[LabelMap] = None,
                     label_file: Optional[str] = None) -> AnnotationIndex:
    """Check an annotation CSV row by row.

    Errors: rows ``AVADataset`` fails on (column count, non-numbers, empty
    lines, a byte-order mark), boxes that are not normalised or are
    inverted, action ids that are 0, missing from the label map or
    >= ``num_classes``. Warnings: repeated rows (training merges them,
    ``AVAMetric`` counts each as a ground-truth box). Rows with ids outside
    ``custom_classes`` are counted: the loader drops them.

    Returns:
        AnnotationIndex: The row count and the first line of each keyframe.
    """
    index, seen = AnnotationIndex(), {}
    lines = _read_lines(path)
    index.rows = len(lines)
    for lineno, line in enumerate(lines, 1):
        if lineno == 1 and line.startswith('\ufeff'):
            problems.add(
                ERROR, 'csv schema', path, lineno, 'the file starts with a '
                'UTF-8 byte-order mark, which becomes part of the first video '
                'id', 'save the file without a BOM')
            continue
        if not line.strip():
            problems.add(ERROR, 'csv schema', path, lineno,
                         'empty line (AVADataset fails on it)',
                         'delete the line')
            continue
        row = _parse_row(line.strip().split(','), lineno, path, split,
                         problems)
        if row is None:
            continue
        video_id, timestamp, box, action_id, _ = row
        bad_box = _box_problem(box)
        if bad_box is not None:
            problems.add(ERROR, 'box', path, lineno, *bad_box)
        for message, hint in _action_id_problem(action_id, num_classes,
                                                custom_classes, label_map,
                                                label_file):
            problems.add(ERROR, 'action id', path, lineno, message, hint)
        if custom_classes is not None and action_id not in custom_classes:
            index.skipped_rows += 1
            continue
        if bad_box is None and row in seen:
            problems.add(
                WARNING, 'duplicate row', path, lineno,
                f'same as line {seen[row]}: training ignores it, but '
                'AVAMetric counts it as one more ground-truth box that can '
                'never be matched', 'delete the repeated row')
        seen.setdefault(row, lineno)
        index.keyframe_lines.setdefault((video_id, timestamp), lineno)
    return index


def lint_exclusions(path: str, video_ids: Set[str], ann_file: str,
                    problems: Problems) -> None:
    """Check an excluded-timestamps CSV (``video_id,timestamp`` rows, which
    ``AVADataset.filter_data`` unpacks into two values)."""
    unknown: Dict[str, int] = {}
    for lineno, line in enumerate(_read_lines(path), 1):
        parts = line.strip().split(',')
        if len(parts) != 2:
            problems.add(
                ERROR, 'excluded timestamps', path, lineno,
                f'{_columns(len(parts))}, expected 2 (video_id,timestamp); '
                'AVADataset fails on this line', 'write `video_id,timestamp`;'
                ' no blank lines or header')
            continue
        try:
            int(parts[1])
        except ValueError:
            problems.add(ERROR, 'excluded timestamps', path, lineno,
                         f'timestamp {parts[1]!r} is not an integer',
                         'write whole seconds, e.g. 0902')
            continue
        if parts[0] not in video_ids:
            unknown.setdefault(parts[0], lineno)
    for video_id, lineno in unknown.items():
        problems.add(
            WARNING, 'excluded timestamps', path, lineno,
            f'video {video_id!r} has no row in {ann_file}, so this line '
            'excludes nothing', 'check that this is the exclusion file of '
            'the same split')
