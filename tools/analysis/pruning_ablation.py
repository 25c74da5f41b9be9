"""The token pruning ablations of EVAD (Table 1b/1c/1g and Fig. 5 of the
paper) on the toy AVA data: the commands, and the table of their results.

Usage::

    # the runs, as a bash script (nothing is run by this tool)
    python tools/analysis/pruning_ablation.py commands \\
        [--work-root work_dirs/ablation] [--seeds 0 1 2] [--frames 8 16] \\
        [--runs rho1.0 keyframe random unified wkf2 wkf4] > ablation.sh
    bash ablation.sh
    # the Markdown tables, from the runs' logs
    python tools/analysis/pruning_ablation.py table [--work-root ...]

Every training run is ``mim train mmaction CONFIG --work-dir
WORK_ROOT/<run>_<frames>f_seed<seed> --cfg-options
model.backbone.keep_rate=.. model.backbone.pruning=..
model.backbone.keyframe_weight=.. randomness.seed=..``, with the toy
config's schedule (24 epochs, validation every 2; the best checkpoint by
validation ``mAP/overall`` is kept, as in ``make demo``). The Fig. 5 runs
test the best checkpoints of ``rho1.0`` (trained without pruning) and
``keyframe`` (trained at rho 0.7) at other keep rates, without retraining:
``mim test mmaction CONFIG --checkpoint <best> --work-dir
WORK_ROOT/test/<run>_<frames>f_seed<seed>_rho<rate> --cfg-options
model.backbone.keep_rate=<rate>``.

The table reads what mmengine writes: the validation frame-mAP@0.5
(``mAP/overall``) of every epoch from ``<work dir>/<timestamp>/vis_data/
scalars.json`` (all timestamps, so resumed runs count), the test result from
``<work dir>/<timestamp>/<timestamp>.json``, and the wall time of a run from
the first and last lines of its ``<timestamp>.log`` files (training and its
validations). With several seeds a cell is mean +- sample standard
deviation.
"""
import argparse
import glob
import json
import os.path as osp
import re
import statistics
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Dict, List, Optional, Sequence, Tuple

METRIC = 'mAP/overall'
CONFIGS = {8: 'configs/evad_toy_ava.py', 16: 'configs/evad_toy_ava_16f.py'}
# keep rates of the Fig. 5 evaluations, and the runs whose best checkpoints
# they test
TEST_KEEP_RATES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)
TEST_RUNS = ('rho1.0', 'keyframe')


@dataclass(frozen=True)
class AblationRun:
    """One training setting of the backbone's token pruning."""
    name: str
    keep_rate: float
    pruning: str
    keyframe_weight: float
    what: str

    def cfg_options(self, seed: int) -> List[str]:
        return [
            f'model.backbone.keep_rate={self.keep_rate:g}',
            f'model.backbone.pruning={self.pruning}',
            f'model.backbone.keyframe_weight={self.keyframe_weight:g}',
            f'randomness.seed={seed}'
        ]


RUNS = (
    AblationRun('rho1.0', 1.0, 'keyframe', 1., 'no pruning'),
    AblationRun('keyframe', 0.7, 'keyframe', 1.,
                'keyframe-centric (EVAD, `make demo`)'),
    AblationRun('random', 0.7, 'random', 1.,
                'random non-keyframe tokens (Table 1b)'),
    AblationRun('unified', 0.7, 'unified', 1.,
                'unified, keyframe not kept (Table 1c)'),
    AblationRun('wkf2', 0.7, 'keyframe', 2., 'keyframe-centric, w_kf 2 '
                '(Table 1g)'),
    AblationRun('wkf4', 0.7, 'keyframe', 4., 'keyframe-centric, w_kf 4 '
                '(Table 1g)'),
)
RUNS_BY_NAME = {r.name: r for r in RUNS}


def run_dir(root: str, run: str, frames: int, seed: int) -> str:
    return osp.join(root, f'{run}_{frames}f_seed{seed}')


def eval_dir(root: str, run: str, frames: int, seed: int,
             keep_rate: float) -> str:
    return osp.join(root, 'test', f'{run}_{frames}f_seed{seed}_rho'
                    f'{keep_rate:g}')


# ----------------------------------------------------------------- commands


def commands(root: str, runs: Sequence[str], frames: Sequence[int],
             seeds: Sequence[int]) -> List[str]:
    """The lines of a bash script running the ablation."""
    lines = [
        '#!/usr/bin/env bash',
        '# EVAD token pruning ablations on the toy AVA data, from the '
        'repository root',
        '# (written by tools/analysis/pruning_ablation.py commands)',
        'set -euo pipefail',
        'PY="${PY:-.venv/bin/python}"',
        'MIM="${MIM:-.venv/bin/mim}"',
        'if [ ! -f data/toy_ava/annotations/train.csv ]; then',
        '    "$PY" tools/make_toy_ava.py data/toy_ava',
        'fi',
    ]
    for f in frames:
        for seed in seeds:
            for name in runs:
                run = RUNS_BY_NAME[name]
                lines.append(
                    f'"$MIM" train mmaction {CONFIGS[f]} --work-dir '
                    f'{run_dir(root, name, f, seed)} --cfg-options '
                    + ' '.join(run.cfg_options(seed)))
    for f in frames:
        for seed in seeds:
            for name in TEST_RUNS:
                if name not in runs:
                    continue
                best = (f'"$(ls -t {run_dir(root, name, f, seed)}/best_*.pth'
                        ' | head -n 1)"')
                for rate in TEST_KEEP_RATES:
                    lines.append(
                        f'"$MIM" test mmaction {CONFIGS[f]} --checkpoint '
                        f'{best} --work-dir '
                        f'{eval_dir(root, name, f, seed, rate)} '
                        f'--cfg-options model.backbone.keep_rate={rate:g}')
    return lines


# ---------------------------------------------------------- reading results


def validation_curve(work_dir: str) -> Dict[int, float]:
    """Validation ``mAP/overall`` by epoch from every ``scalars.json`` of a
    work dir (a later timestamp wins for the same epoch)."""
    curve: Dict[int, float] = {}
    for path in sorted(
            glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                record = json.loads(line)
                if METRIC in record:
                    curve[int(record['step'])] = float(record[METRIC])
    return curve


def eval_result(work_dir: str) -> Optional[float]:
    """``mAP/overall`` of the latest ``mim test`` in a work dir, or None."""
    paths = [
        p for p in sorted(glob.glob(osp.join(work_dir, '*', '*.json')))
        if osp.basename(p) == osp.basename(osp.dirname(p)) + '.json'
    ]
    for path in reversed(paths):
        with open(path) as f:
            record = json.load(f)
        if METRIC in record:
            return float(record[METRIC])
    return None


# the time stamp of a line of mmengine's <timestamp>.log file
_LOG_TIME = re.compile(r'^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) - ')


def wall_seconds(work_dir: str) -> Optional[float]:
    """Seconds between the first and last time stamps of each
    ``<timestamp>.log`` of a work dir, summed; None without logs."""
    total, found = 0., False
    for path in glob.glob(osp.join(work_dir, '*', '*.log')):
        stamps = []
        with open(path, errors='replace') as f:
            for line in f:
                match = _LOG_TIME.match(line)
                if match:
                    stamps.append(match.group(1))
        if len(stamps) < 2:
            continue
        first, last = (datetime.strptime(s, '%Y/%m/%d %H:%M:%S')
                       for s in (stamps[0], stamps[-1]))
        total += (last - first).total_seconds()
        found = True
    return total if found else None


def _mean_std(values: Sequence[float]) -> str:
    if len(values) == 1:
        return f'{values[0]:.4f}'
    return (f'{statistics.mean(values):.4f} +- '
            f'{statistics.stdev(values):.4f}')


def _minutes(seconds: Sequence[float]) -> str:
    mean = statistics.mean(seconds)
    return f'{int(mean // 60)} min {int(round(mean % 60)):02d} s'


def _seeds_in(root: str, prefix: str) -> List[int]:
    seeds = []
    for path in glob.glob(osp.join(root, f'{prefix}_seed*')):
        match = re.fullmatch(re.escape(prefix) + r'_seed(\d+)',
                             osp.basename(path))
        if match and osp.isdir(path):
            seeds.append(int(match.group(1)))
    return sorted(seeds)


def training_table(root: str) -> List[str]:
    """Markdown rows: every run found under ``root``."""
    rows = [
        '| run | frames | pruning | rho | w_kf | seeds | best val '
        'frame-mAP@0.5 | best epoch | last epoch mAP | wall time |',
        '|---|---|---|---|---|---|---|---|---|---|'
    ]
    for frames in CONFIGS:
        for run in RUNS:
            seeds = _seeds_in(root, f'{run.name}_{frames}f')
            best, epochs, last, times = [], [], [], []
            for seed in seeds:
                work_dir = run_dir(root, run.name, frames, seed)
                curve = validation_curve(work_dir)
                if not curve:
                    continue
                epoch = max(curve, key=lambda e: (curve[e], -e))
                best.append(curve[epoch])
                epochs.append(str(epoch))
                last.append(curve[max(curve)])
                seconds = wall_seconds(work_dir)
                if seconds is not None:
                    times.append(seconds)
            if not best:
                continue
            rows.append(
                f'| {run.what} | {frames} | {run.pruning} | '
                f'{run.keep_rate:g} | {run.keyframe_weight:g} | {len(best)} '
                f'| {_mean_std(best)} | {", ".join(epochs)} | '
                f'{_mean_std(last)} | {_minutes(times) if times else "-"} |')
    return rows


def keep_rate_table(root: str) -> List[str]:
    """Markdown rows of the Fig. 5 evaluations found under ``root``."""
    header = ('| trained at | frames | seeds | ' + ' | '.join(
        f'test rho {r:g}' for r in TEST_KEEP_RATES) + ' |')
    rows = [header, '|---|---|---|' + '---|' * len(TEST_KEEP_RATES)]
    for frames in CONFIGS:
        for name in TEST_RUNS:
            run = RUNS_BY_NAME[name]
            seeds = _seeds_in(root, f'{name}_{frames}f')
            cells, used = [], set()
            for rate in TEST_KEEP_RATES:
                values = []
                for seed in seeds:
                    value = eval_result(
                        eval_dir(root, name, frames, seed, rate))
                    if value is not None:
                        values.append(value)
                        used.add(seed)
                cells.append(_mean_std(values) if values else '-')
            if used:
                rows.append(f'| rho {run.keep_rate:g} ({name}) | {frames} | '
                            f'{len(used)} | ' + ' | '.join(cells) + ' |')
    return rows


def tables(root: str) -> Tuple[List[str], List[str]]:
    """The training and the test-time keep rate tables (Markdown lines; a
    table with no run found has its header only)."""
    return training_table(root), keep_rate_table(root)


# --------------------------------------------------------------------- CLI


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='EVAD token pruning ablations on the toy AVA data')
    sub = parser.add_subparsers(dest='command', required=True)
    cmd = sub.add_parser('commands', help='print the runs as a bash script')
    cmd.add_argument('--runs', nargs='+', default=[r.name for r in RUNS],
                     choices=[r.name for r in RUNS])
    cmd.add_argument('--frames', type=int, nargs='+', default=[8],
                     choices=sorted(CONFIGS),
                     help='8: configs/evad_toy_ava.py (4 temporal slices); '
                     '16: configs/evad_toy_ava_16f.py (8 slices, the '
                     "paper's token proportions)")
    cmd.add_argument('--seeds', type=int, nargs='+', default=[0])
    for p in (cmd, sub.add_parser('table', help='print the result tables')):
        p.add_argument('--work-root', default='work_dirs/ablation',
                       help='parent of the runs\' work dirs')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.command == 'commands':
        print('\n'.join(
            commands(args.work_root, args.runs, args.frames, args.seeds)))
        return 0
    train, test = tables(args.work_root)
    if len(train) == 2 and len(test) == 2:
        print(f'error: no ablation run found under {args.work_root} '
              '(expected e.g. keyframe_8f_seed0/<timestamp>/vis_data/'
              'scalars.json)', file=sys.stderr)
        return 1
    print('Validation frame-mAP@0.5 (mAP/overall) of the training runs:\n')
    print('\n'.join(train))
    print('\nTest-time keep rates without retraining (Fig. 5), test '
          'frame-mAP@0.5 of the best checkpoint:\n')
    print('\n'.join(test))
    return 0


if __name__ == '__main__':
    sys.exit(main())
