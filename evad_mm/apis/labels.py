"""Action label names: label-map files and model class counts."""
import logging
import os
import os.path as osp
import re
from pathlib import Path
from typing import Dict, Sequence, Union

from mmengine.config import Config
from mmengine.logging import print_log

__all__ = ['load_label_map', 'num_classes', 'get_label_names']


def load_label_map(path: Union[str, Path]) -> Dict[int, str]:
    """Read a label map: ``{class id: name}``.

    Formats: mmaction2's text label map (``id: name`` per line, e.g.
    ``tools/data/ava/label_map.txt``), one name per line (ids 1, 2, ...), or
    an AVA-style ``.pbtxt`` (``item { name: "..." id: N }``).
    """
    path = os.fspath(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'Label map not found: {path}')
    with open(path, encoding='utf-8') as f:
        text = f.read()
    labels: Dict[int, str] = {}

    def add(class_id, name):
        if class_id in labels:
            raise ValueError(f'Label map {path}: class id {class_id} is '
                             'listed twice')
        labels[class_id] = name

    if re.search(r'(^|\s)item\s*\{', text):
        for body in re.findall(r'item\s*\{(.*?)\}', text, re.S):
            name = re.search(r'(?<![\w])name\s*:\s*"([^"]*)"', body) or \
                re.search(r'display_name\s*:\s*"([^"]*)"', body)
            class_id = re.search(r'(?<![\w])(?:label_)?id\s*:\s*(-?\d+)',
                                 re.sub(r'"[^"]*"', '""', body))
            if not (name and class_id):
                raise ValueError(f'Label map {path}: an item without a name '
                                 f'or an id: {body.strip()!r}')
            add(int(class_id.group(1)), name.group(1))
    else:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        numbered = [re.match(r'^(\d+)\s*:\s*(.+)$', line) for line in lines]
        if all(numbered):
            for match in numbered:
                add(int(match.group(1)), match.group(2).strip())
        elif not any(numbered):
            for i, line in enumerate(lines, 1):
                add(i, line)
        else:
            bad = lines[[m is None for m in numbered].index(True)]
            raise ValueError(f'Label map {path}: expected `id: name` on '
                             f'every line, got {bad!r}')
    if not labels:
        raise ValueError(f'Label map {path} lists no classes')
    return labels


def num_classes(model) -> int:
    """Columns of the model's scores, mmaction2's unused column 0 included."""
    head = getattr(model, 'action_head', None)
    if getattr(head, 'num_classes', None):
        return int(head.num_classes)
    return int(model.cfg.model.action_head.num_classes)


# (source, named, predicted) of the subset notes already logged
_SUBSET_NOTED: set = set()


def get_label_names(model,
                    label_map: Union[None, str, Path, Dict[int, str],
                                     Sequence[str]] = None) -> Dict[int, str]:
    """Class names by class id (1 .. num_classes - 1, the columns of the
    model's scores).

    From ``label_map`` (a file for :func:`load_label_map`, a dict or a list
    of names for ids 1, 2, ...), else the config's ``classes`` variable, else
    ``class_{id}``. A map must name the model's ``num_classes - 1`` classes;
    a map with gaps in its ids (such as AVA's 60-class
    ``ava_action_list_v2.2_for_activitynet_2019.pbtxt`` for an 80-class AVA
    model) names a subset of the ids and only those classes are reported.

    Raises:
        ValueError: The map's class count or ids do not fit the model.
    """
    num = num_classes(model) - 1
    source = 'label map'
    if label_map is None:
        classes = getattr(model, 'cfg', Config()).get('classes')
        if classes is None:
            return {i: f'class_{i}' for i in range(1, num + 1)}
        label_map, source = list(classes), 'config variable `classes`'
    if isinstance(label_map, (str, Path)):
        source = f'label map {os.fspath(label_map)}'
        names = load_label_map(label_map)
    elif isinstance(label_map, dict):
        names = {int(k): str(v) for k, v in label_map.items()}
    else:
        names = {i: str(n) for i, n in enumerate(label_map, 1)}
    ids = sorted(names)
    out_of_range = [i for i in ids if not 1 <= i <= num]
    contiguous = ids == list(range(1, len(ids) + 1))
    if out_of_range or (contiguous and len(ids) != num) or not ids:
        raise ValueError(
            f'The {source} has {len(ids)} classes (ids '
            f'{ids[0] if ids else "-"}..{ids[-1] if ids else "-"}) but the '
            f'model predicts {num} (num_classes={num + 1}, column 0 unused): '
            f'class ids must be 1..{num}. Use the label map the model was '
            'trained with.')
    if len(ids) != num and (source, len(ids), num) not in _SUBSET_NOTED:
        _SUBSET_NOTED.add((source, len(ids), num))  # once, not per call
        print_log(f'The {source} names {len(ids)} of the model\'s {num} '
                  'classes: only those are reported.', logger='current',
                  level=logging.INFO)
    return names
