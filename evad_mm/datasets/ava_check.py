"""Check one AVA-format split by loading it with mmaction2's ``AVADataset``.

The files are first linted line by line (:mod:`evad_mm.datasets.ava_lint`)
for what ``AVADataset`` would crash on or silently misread; then the split's
own ``AVADataset`` is built with a probe pipeline: the split's
``RawFrameInit`` (if any) and its ``SampleAVAFrames`` made to return every
frame index its random jitter can draw. Every sample goes through it, and
each frame file it names must exist. Counts (videos, keyframes, excluded
keyframes, boxes, classes with examples) are the dataset's.
"""
import inspect
import os
import os.path as osp
import sys
from collections import Counter
from typing import Dict, List, Optional, Sequence, Set, Tuple, Union

import numpy as np
from mmaction.datasets import AVADataset
from mmaction.datasets.transforms import SampleAVAFrames
from mmaction.registry import DATASETS, TRANSFORMS
from mmengine.utils import track_iter_progress

from .ava_lint import (ERROR, WARNING, AnnotationIndex, LabelMap, Problems,
                       lint_annotations, lint_exclusions, lint_label_map)

# AVADataset's own defaults (fps, timestamp_start, num_classes, ...)
AVA_DEFAULTS = {
    name: param.default
    for name, param in inspect.signature(AVADataset).parameters.items()
    if param.default is not inspect.Parameter.empty
}
STATS = ('videos', 'keyframes', 'excluded', 'boxes', 'rows', 'skipped_rows',
         'with_examples', 'without_examples')
_UNBOUNDED = (-2**40, 2**40)  # a shot no clip reaches the ends of


class SampleEveryAVAFrame(SampleAVAFrames):
    """``SampleAVAFrames`` whose ``frame_inds`` are every index it can draw.

    In training mode ``SampleAVAFrames.transform`` shifts each index by a
    random offset from ``-frame_interval // 2`` up to, not including,
    ``(frame_interval + 1) // 2``; this sampler runs mmaction2's
    ``_get_clips`` (centre, clamping to the shot) once per offset and
    returns the sorted, unique indices of all of them, to which
    ``transform`` adds ``start_index`` as usual. It also sets
    ``clip_padded``: whether the shot clamped any index (the clip repeats an
    edge frame).

    Args:
        clip_len (int): Frames per clip.
        frame_interval (int): Step between them. Defaults to 2.
        test_mode (bool): No random offsets. Defaults to False.
    """

    def _get_clips(self, center_index: int, skip_offsets: np.ndarray,
                   shot_info: tuple) -> np.ndarray:
        low, high = -self.frame_interval // 2, (self.frame_interval + 1) // 2
        offsets = [0] if self.test_mode else range(low, high)
        clamped, free = [], []
        for offset in offsets:
            shift = np.full(self.clip_len, offset)
            clamped.append(super()._get_clips(center_index, shift, shot_info))
            free.append(super()._get_clips(center_index, shift, _UNBOUNDED))
        self._padded = not np.array_equal(clamped, free)
        return np.unique(np.concatenate(clamped))

    def transform(self, results: Dict) -> Dict:
        """Add every drawable ``frame_inds`` and ``clip_padded``."""
        results = super().transform(results)
        results['clip_padded'] = self._padded
        return results


def step_type(step) -> str:
    """The class name a config dict builds, e.g. 'SampleAVAFrames' for
    ``dict(type='mmaction.SampleAVAFrames')``; '' for anything else."""
    if not isinstance(step, dict):
        return ''
    return str(step.get('type', '')).split('.')[-1]


def probe_pipeline(pipeline: Sequence[Union[dict, object]],
                   use_frames: bool = True) -> List:
    """The steps of ``pipeline`` that choose frame files: ``RawFrameInit``
    as configured, ``SampleAVAFrames`` as :class:`SampleEveryAVAFrame`
    (without a sampler only the keyframe, a 1-frame clip, is probed); for
    video files (``use_frames=False``) only the step that opens the video,
    e.g. ``DecordInit``."""
    if not use_frames:
        return [
            TRANSFORMS.build(step) for step in pipeline or ()
            if step_type(step).endswith('Init')
        ][:1]
    steps = []
    for step in pipeline or ():
        if step_type(step) == 'RawFrameInit':
            steps.append(TRANSFORMS.build(step))
        elif step_type(step) == 'SampleAVAFrames':
            args = {k: v for k, v in step.items() if k != 'type'}
            steps.append(SampleEveryAVAFrame(**args))
    if not any(isinstance(s, SampleEveryAVAFrame) for s in steps):
        steps.append(SampleEveryAVAFrame(1, frame_interval=1, test_mode=True))
    return steps


def _file_ok(path: Optional[str], what: str, source: str, split: str,
             problems: Problems) -> bool:
    """A configured file exists; True when it can be read."""
    if path is None:
        return False
    if not osp.isfile(path):
        problems.add(
            ERROR, 'settings', source, None,
            f'[{split}] {what} {path} does not exist', 'fix the path '
            '(relative paths start from the working directory)')
        return False
    return True


def _lint_classes(cfg: dict, label_map: Optional[LabelMap], source: str,
                  split: str, problems: Problems) -> None:
    """``custom_classes`` as ``AVADataset`` asserts it; label ids the model
    cannot predict."""
    custom, num_classes = cfg['custom_classes'], cfg['num_classes']

    def error(message: str, hint: str) -> None:
        problems.add(ERROR, 'settings', source, None, f'[{split}] {message}',
                     hint)

    if custom is None:
        too_big = sorted(i for i in (label_map.names if label_map else ())
                         if i >= num_classes)
        if too_big:
            problems.add(
                WARNING, 'settings', source, None,
                f'[{split}] label ids {too_big[:10]} >= num_classes '
                f'{num_classes}: the model cannot predict them, yet AVAMetric '
                'evaluates them', 'raise num_classes or use custom_classes')
        return
    if 0 in custom:
        error('custom_classes contains 0',
              'list action ids only (0 is the unused column)')
    if len(custom) != len(set(custom)):
        error('custom_classes repeats an id', 'list each id once')
    if num_classes != len(custom) + 1:
        error(
            f'num_classes={num_classes} but custom_classes has {len(custom)} '
            f'ids', f'set num_classes={len(custom) + 1} (len(custom_classes) '
            '+ 1) in the datasets, model.action_head and the evaluators')
    if cfg['label_file'] is None:
        error('custom_classes needs a label_file (AVADataset reads it)',
              'set label_file')
    elif label_map is not None:
        unknown = sorted(set(custom) - set(label_map.names))
        if unknown:
            error(
                f'custom_classes {unknown} are not in the label map '
                f'{cfg["label_file"]}',
                'custom_classes must be a subset of the label ids')


def _open_video(dataset: AVADataset, info: dict, line: Optional[int],
                opened: Set[str], problems: Problems) -> None:
    """Open the video file of a sample (``use_frames=False``) with the
    split's reader, once per video."""
    if info['filename'] in opened:
        return
    opened.add(info['filename'])
    try:
        dataset.pipeline(info)
    except Exception as exc:  # reported at its line, as training would fail
        problems.add(ERROR, 'frames', dataset.ann_file, line,
                     f'{info["video_id"]}: {type(exc).__name__}: {exc}',
                     'put the <video_id> videos in data_prefix.img')


def _check_frames(dataset: AVADataset, info: dict, line: Optional[int],
                  listings: Dict[str, Optional[Set[str]]],
                  problems: Problems) -> None:
    """Run the probe pipeline on one sample; every file it names exists.

    ``listings`` caches each frame folder's file names (None: no folder).
    """
    path, video, folder = dataset.ann_file, info['video_id'], info['frame_dir']
    where = f'{video},{info["timestamp"]:04d}'
    if folder not in listings:
        listings[folder] = set(os.listdir(folder)) \
            if osp.isdir(folder) else None
        if listings[folder] is None:
            problems.add(
                ERROR, 'frames', path, line, f'frame folder {folder} of video '
                f'{video!r} does not exist', 'extract the frames to '
                '<data_prefix.img>/<video_id>/ or fix data_prefix.img')
    names = listings[folder]
    if names is None:
        return
    try:
        results = dataset.pipeline(info)
        tmpl, offset = results['filename_tmpl'], results.get('offset', 0)
        files = [tmpl.format(int(i) + offset) for i in results['frame_inds']]
    except Exception as exc:  # reported at its line, as training would fail
        problems.add(ERROR, 'frames', path, line,
                     f'{where}: {type(exc).__name__}: {exc}')
        return
    missing = [
        f for f in files
        if not (osp.isfile(osp.join(folder, f)) if os.sep in f else f in names)
    ]
    if missing:
        more = f' and {len(missing) - 3} more' if len(missing) > 3 else ''
        problems.add(
            ERROR, 'frames', path, line, f'{where}: {len(missing)} of the '
            f'{len(files)} frames its clip can read are missing in {folder}: '
            f'{", ".join(missing[:3])}{more}', f'the clip reads {files[0]}..'
            f'{files[-1]}: extract them, or fix fps/timestamp_start/'
            'start_index')
    elif results['clip_padded']:
        problems.add(
            WARNING, 'clip padding', path, line, f'{where}: the clip reaches '
            'outside the frames and mmaction2 repeats the edge frame',
            'fine at the ends of a video; otherwise check timestamp_start/'
            'timestamp_end')


def _lint_files(
    cfg: dict, split: str, source: str, problems: Problems
) -> Optional[Tuple[Optional[LabelMap], AnnotationIndex]]:
    """Lint the split's files and class settings; None without an
    annotation file to read."""
    ann_file = cfg['ann_file']
    if ann_file is None:
        problems.add(ERROR, 'settings', source, None,
                     f'[{split}] no ann_file given', 'set ann_file')
    usable = {
        key: _file_ok(cfg[key], key, source, split, problems)
        for key in ('ann_file', 'exclude_file', 'label_file', 'proposal_file')
    }
    if cfg['label_file'] is None:
        problems.add(
            WARNING, 'settings', source, None, f'[{split}] no label_file: '
            'action ids are not checked against a label map',
            'set label_file (AVAMetric needs it)')
    label_map = lint_label_map(cfg['label_file'], problems) \
        if usable['label_file'] else None
    _lint_classes(cfg, label_map, source, split, problems)
    if not usable['ann_file']:
        return None
    index = lint_annotations(ann_file, problems, split, cfg['num_classes'],
                             cfg['custom_classes'], label_map,
                             cfg['label_file'])
    if usable['exclude_file']:
        video_ids = {video_id for video_id, _ in index.keyframe_lines}
        lint_exclusions(cfg['exclude_file'], video_ids, ann_file, problems)
    if not any(step_type(s) == 'SampleAVAFrames' for s in cfg['pipeline']):
        problems.add(
            WARNING, 'settings', source, None, f'[{split}] no '
            "SampleAVAFrames clip_len: only each keyframe's own frame is "
            'checked', 'give --clip-len and --frame-interval')
    return label_map, index


def _probe_samples(dataset: AVADataset, cfg: dict,
                   keyframe_lines: Dict[Tuple[str, int],
                                        int], problems: Problems,
                   check_frames: bool) -> Tuple[int, int, Counter]:
    """Count and check every sample of ``dataset``.

    Returns:
        tuple: The number of videos and of boxes, and the keyframes with
        each label column (a Counter by column).
    """
    # AVADataset gives every frame video the range [timestamp_start,
    # timestamp_end] and SampleAVAFrames clamps clips to it, unless the
    # pipeline counts each video's frames (RawFrameInit)
    shared_range = cfg['use_frames'] and not any(
        step_type(s) == 'RawFrameInit' for s in cfg['pipeline'])
    start, end = dataset.timestamp_start, dataset.timestamp_end
    listings: Dict[str, Optional[Set[str]]] = {}
    opened: Set[str] = set()
    examples, videos, boxes = Counter(), set(), 0
    for i in track_iter_progress(range(len(dataset)), file=sys.stderr):
        info = dataset.get_data_info(i)
        line = keyframe_lines.get((info['video_id'], info['timestamp']))
        videos.add(info['video_id'])
        boxes += len(info['gt_bboxes'])
        examples.update(np.flatnonzero(info['gt_labels'].sum(0)).tolist())
        if shared_range and not start <= info['timestamp'] <= end:
            problems.add(
                ERROR, 'timestamp', dataset.ann_file, line,
                f'timestamp {info["timestamp"]} is outside [timestamp_start, '
                f'timestamp_end] = [{start}, {end}]; mmaction2 would clamp '
                'the clip to the first/last frame and show the wrong moment',
                'fix the timestamp or set timestamp_start/timestamp_end to '
                'the time range of the frames')
        if check_frames and 'filename' in info:
            _open_video(dataset, info, line, opened, problems)
        elif check_frames:
            _check_frames(dataset, info, line, listings, problems)
    return len(videos), boxes, examples


def check_ava_split(dataset_cfg: dict,
                    split: str,
                    source: str,
                    problems: Problems,
                    check_frames: bool = True) -> Dict[str, Optional[int]]:
    """Lint the files of one ``AVADataset`` config, load it and probe it.

    Args:
        dataset_cfg (dict): The split's ``AVADataset`` config.
        split (str): Its name (``'train'`` gets warnings where ``AVAMetric``
            would fail).
        source (str): Where settings problems are reported (a config file).
        problems (Problems): Receives the findings.
        check_frames (bool): Run the probe pipeline and look for the frame
            files. Defaults to True.

    Returns:
        dict: The counts of :data:`STATS`, None where unknown.
    """
    cfg = {**AVA_DEFAULTS, 'ann_file': None, 'pipeline': [], **dataset_cfg}
    if cfg['ann_file'] and cfg.get('data_root') and \
            not osp.isabs(cfg['ann_file']):  # as BaseDataset joins it
        cfg['ann_file'] = osp.join(cfg['data_root'], cfg['ann_file'])
    stats = dict.fromkeys(STATS)  # None: unknown (the dataset did not load)
    linted = _lint_files(cfg, split, source, problems)
    if linted is None:
        return stats
    label_map, index = linted
    stats.update(rows=index.rows, skipped_rows=index.skipped_rows)
    try:
        dataset = DATASETS.build(
            dict(dataset_cfg,
                 pipeline=probe_pipeline(cfg['pipeline'], cfg['use_frames'])))
    except Exception as exc:  # reported: the lint above names the cause
        problems.add(
            ERROR, 'dataset', cfg['ann_file'], None, "mmaction2's AVADataset "
            f'cannot load the {split} split: {type(exc).__name__}: {exc}',
            'fix the errors above'
            if problems.count() else 'check the files by hand')
        return stats
    videos, boxes, examples = _probe_samples(dataset, cfg,
                                             index.keyframe_lines, problems,
                                             check_frames)
    stats.update(videos=videos,
                 keyframes=len(dataset),
                 boxes=boxes,
                 excluded=len(dataset.load_data_list()) - len(dataset))
    stats['with_examples'], stats['without_examples'] = _coverage(
        cfg, label_map, examples, split, source, problems)
    return stats


def _coverage(cfg: dict, label_map: Optional[LabelMap], examples: Counter,
              split: str, source: str, problems: Problems) -> tuple:
    """Warn about classes without examples; return (with, without).

    ``examples`` counts keyframes per label column; with custom classes,
    column ``c`` is class ``custom_classes[c - 1]``.
    """
    custom = cfg['custom_classes']
    if custom is not None:
        columns = {c: i + 1 for i, c in enumerate(custom)}
    elif label_map is not None:
        columns = {
            c: c
            for c in sorted(label_map.names) if 0 < c < cfg['num_classes']
        }
    else:
        columns = {c: c for c in range(1, cfg['num_classes'])}
    without = [c for c, column in columns.items() if not examples[column]]
    for class_id in without:
        path, line, name = source, None, ''
        if label_map is not None and class_id in label_map.names:
            path, line = cfg['label_file'], label_map.lines.get(class_id)
            name = f' {label_map.names[class_id]!r}'
        problems.add(
            WARNING, 'no examples', path, line, f'class {class_id}{name} has '
            f'no example in the {split} split',
            'add annotations, or leave it out with custom_classes')
    return len(columns) - len(without), len(without)
