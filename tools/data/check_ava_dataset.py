"""Check an AVA-format data set before training on it.

Usage::

    python tools/data/check_ava_dataset.py CONFIG [--split train|val|test|all]
    python tools/data/check_ava_dataset.py --ann-file train.csv \\
        --label-file action_list.pbtxt --frame-dir rawframes --fps 30 \\
        --timestamp-start 900 --timestamp-end 1800 --clip-len 16 \\
        --frame-interval 4 --num-classes 81 [--exclude-file FILE]

With a config, each split's ``AVADataset`` (``{split}_dataloader.dataset``)
is checked; options given next to a config replace its values in every
checked split. Without a config the options describe one data set
(``--split`` names it, ``train`` by default; unset values are
``AVADataset``'s defaults).

Each split is loaded by mmaction2's own ``AVADataset`` and every sample
runs through a probe of its pipeline (``RawFrameInit``, ``SampleAVAFrames``
drawing every frame its jitter can pick); each frame file must exist. What
``AVADataset`` would crash on or silently misread is reported at its line
(see ``evad_mm.datasets.ava_check`` and ``evad_mm.datasets.ava_lint``); with
a config, the model's and the evaluators' class settings must match the
datasets'. The exit code is 1 when there is an error (warnings do not fail).
"""
import argparse
import copy
import os.path as osp
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, REPO)

from evad_mm.datasets import ava_check, ava_lint  # noqa: E402
from evad_mm.datasets.ava_lint import ERROR, WARNING  # noqa: E402

SPLITS = ('train', 'val', 'test')
DATASET_OPTIONS = ('ann_file', 'exclude_file', 'label_file', 'fps',
                   'timestamp_start', 'timestamp_end', 'num_classes',
                   'custom_classes', 'filename_tmpl', 'start_index')
SAMPLER_OPTIONS = ('clip_len', 'frame_interval')


@dataclass
class SplitReport:
    """Counts and problems of one checked split."""

    split: str
    stats: Dict[str, int] = field(default_factory=dict)
    problems: ava_lint.Problems = field(default_factory=ava_lint.Problems)
    same_as: Optional[str] = None


def apply_options(dataset: dict, args: argparse.Namespace) -> dict:
    """The dataset config with the command line's values put in."""
    dataset = copy.deepcopy(dataset)
    dataset.update({
        key: getattr(args, key)
        for key in DATASET_OPTIONS if getattr(args, key) is not None
    })
    if args.frame_dir is not None:
        dataset['data_prefix'] = dict(dataset.get('data_prefix') or {},
                                      img=args.frame_dir)
    sampler = {
        key: getattr(args, key)
        for key in SAMPLER_OPTIONS if getattr(args, key) is not None
    }
    if args.test_mode:
        sampler['test_mode'] = True
    pipeline = dataset.setdefault('pipeline', [])
    steps = [
        s for s in pipeline if ava_check.step_type(s) == 'SampleAVAFrames'
    ]
    for step in steps:
        step.update(sampler)
    if not steps and 'clip_len' in sampler:
        pipeline.append(dict(type='SampleAVAFrames', **sampler))
    return dataset


def split_datasets(cfg: dict, splits: Sequence[str],
                   notes: List[str]) -> List[Tuple[str, dict]]:
    """(split, AVADataset config) of each split the config has."""
    found = []
    for split in splits:
        dataset = (cfg.get(f'{split}_dataloader') or {}).get('dataset')
        while dataset and 'dataset' in dataset and 'ann_file' not in dataset:
            dataset = dataset['dataset']  # e.g. RepeatDataset
        if not dataset:
            notes.append(f'{split}: not checked, the config has no '
                         f'{split}_dataloader.dataset')
        elif ava_check.step_type(dataset) != 'AVADataset':
            notes.append(
                f'{split}: not checked, {split}_dataloader.dataset '
                f'is a {ava_check.step_type(dataset)!r}, not an AVADataset')
        else:
            found.append((split, dataset))
    return found


def check_config_classes(cfg: dict, split: str, dataset: dict, source: str,
                         problems: ava_lint.Problems) -> None:
    """The model's and the split's ``AVAMetric``'s classes and files are the
    dataset's."""
    num_classes = dataset.get('num_classes',
                              ava_check.AVA_DEFAULTS['num_classes'])
    custom = dataset.get('custom_classes')
    head = (cfg.get('model') or {}).get('action_head') or {}
    if head.get('num_classes', num_classes) != num_classes:
        problems.add(
            ERROR, 'settings', source, None,
            f'[{split}] model.action_head.num_classes={head["num_classes"]} '
            f'but the dataset has num_classes={num_classes}',
            'set both to the same value')
    metric = cfg.get(f'{split}_evaluator') if split != 'train' else None
    if ava_check.step_type(metric) != 'AVAMetric':
        return
    for key in ('ann_file', 'exclude_file', 'label_file'):
        theirs, ours = metric.get(key), dataset.get(key)
        if theirs and ours and osp.abspath(theirs) != osp.abspath(ours):
            problems.add(
                WARNING, 'settings', source, None,
                f'[{split}] the evaluator reads {key}={theirs} but the '
                f'dataset reads {ours}', 'point both at the same file')
    metric_classes = metric.get('num_classes', 81)  # AVAMetric's default
    metric_custom = metric.get('custom_classes')
    if (metric_classes, metric_custom) != (num_classes, custom):
        problems.add(
            ERROR, 'settings', source, None,
            f'[{split}] the evaluator has num_classes={metric_classes}, '
            f'custom_classes={metric_custom}; the dataset num_classes='
            f'{num_classes}, custom_classes={custom}',
            f'use the same values in {split}_evaluator')


def collect_reports(args: argparse.Namespace,
                    notes: List[str]) -> List[SplitReport]:
    """Check every split the config (or the options) describes."""
    if args.config is None:
        dataset = apply_options(dict(type='AVADataset'), args)
        report = SplitReport(args.split or 'train')
        report.stats = ava_check.check_ava_split(dataset, report.split,
                                                 '<command line>',
                                                 report.problems,
                                                 not args.skip_frames)
        return [report]
    from mmengine.config import Config
    cfg = Config.fromfile(args.config).to_dict()
    splits = SPLITS if args.split in (None, 'all') else (args.split, )
    reports, checked = [], {}
    for split, dataset in split_datasets(cfg, splits, notes):
        dataset = apply_options(dataset, args)
        evaluator = cfg.get(f'{split}_evaluator')
        twin = next(
            (s for s, seen in checked.items() if seen == (dataset, evaluator)),
            None)
        if twin is not None:
            reports.append(SplitReport(split, same_as=twin))
            continue
        checked[split] = (dataset, evaluator)
        report = SplitReport(split)
        check_config_classes(cfg, split, dataset, args.config, report.problems)
        report.stats = ava_check.check_ava_split(dataset, split, args.config,
                                                 report.problems,
                                                 not args.skip_frames)
        reports.append(report)
    return reports


def format_summary(reports: Sequence[SplitReport]) -> str:
    """A per-split table of counts."""
    header = ('split', 'videos', 'keyframes', 'excluded', 'boxes', 'rows',
              'classes w/ ex.', 'w/o ex.', 'errors', 'warnings')
    keys = ('videos', 'keyframes', 'excluded', 'boxes', 'rows',
            'with_examples', 'without_examples')
    table, twins = [header], []
    for r in reports:
        if r.same_as:
            twins.append(f'{r.split}: the same data set and evaluator as '
                         f'{r.same_as}, checked once')
            continue
        table.append((r.split, *('-' if r.stats[k] is None else r.stats[k]
                                 for k in keys), r.problems.count(ERROR),
                      r.problems.count(WARNING)))
    widths = [max(len(str(row[i])) for row in table) for i in range(10)]
    lines = [
        '  '.join(
            str(cell).ljust(w) if i == 0 else str(cell).rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
        for row in table
    ]
    lines.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(lines + twins)


def format_problems(problems: Sequence[ava_lint.Problem],
                    max_shown: int) -> str:
    """Problems grouped by level and kind, at most ``max_shown`` each."""
    groups: Dict[tuple, List[ava_lint.Problem]] = defaultdict(list)
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
        'timestamps, pbtxt label map, raw frames) by loading it with '
        "mmaction2's AVADataset. Exit code 1 when there is an error.")
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
    parser.add_argument('--max-shown',
                        type=int,
                        default=20,
                        help='problems shown per kind (default: %(default)s)')
    parser.add_argument('--skip-frames',
                        action='store_true',
                        help='do not look for the frame files')
    data = parser.add_argument_group(
        'data set', 'without a config: the data set; with a config: values '
        "that replace the config's in every split")
    for option, kind, text in (
        ('ann-file', str, 'annotation CSV'), ('exclude-file', str,
                                              'excluded-timestamps CSV'),
        ('label-file', str,
         'pbtxt label map'), ('frame-dir', str,
                              'folder of <video_id>/ frame folders '
                              '(data_prefix.img)'),
        ('filename-tmpl', str, "frame file names (default "
         "'img_{:05}.jpg')"), ('start-index', int,
                               'index of the first frame file (default 1)'),
        ('fps', int, 'frames per second (default 30)'),
        ('timestamp-start', int, 'time of the first frame (default 900)'),
        ('timestamp-end', int, "end of the frames' time range (default "
         '1800)'), ('clip-len', int,
                    'SampleAVAFrames clip_len (default: check '
                    'only the keyframes)'),
        ('frame-interval', int, 'SampleAVAFrames frame_interval '
         '(default 2)'), ('num-classes', int,
                          'classes including column 0 (default 81)'),
        ('custom-classes', _int_list, 'comma-separated action ids to '
         'train on')):
        data.add_argument(f'--{option}', type=kind, help=text)
    data.add_argument('--test-mode',
                      action='store_true',
                      help='sample clips without the training jitter')
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
    from mmengine.logging import MMLogger
    args = parse_args(argv)
    # AVADataset and the video readers log to stdout: keep the report clean
    if not MMLogger.check_instance_created('check_ava_dataset'):
        MMLogger.get_instance('check_ava_dataset', log_level='ERROR')
    notes: List[str] = []
    reports = collect_reports(args, notes)
    print(f'AVA data set check: {args.config or args.ann_file}')
    for note in notes:
        print(f'  note: {note}')
    if not reports:
        print('error: nothing to check')
        return 1
    print(format_summary(reports))
    for report in reports:
        if report.stats.get('skipped_rows'):
            print(f'  note: {report.split}: {report.stats["skipped_rows"]} '
                  'rows have ids outside custom_classes and are skipped by '
                  'AVADataset')
    # splits sharing a label map report its problems once
    problems = list(dict.fromkeys(p for r in reports for p in r.problems))
    print(format_problems(problems, args.max_shown))
    errors = sum(p.level == ERROR for p in problems)
    verdict = 'FAILED' if errors else 'OK'
    print(f'\n{verdict}: {errors} errors, {len(problems) - errors} warnings')
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main())
