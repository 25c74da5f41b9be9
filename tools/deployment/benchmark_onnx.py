"""PyTorch against onnxruntime: throughput and peak memory of EVAD.

Usage::

    python tools/deployment/benchmark_onnx.py configs/evad_vitb_ava.py \
        --keep-rates 1.0 0.7 --shape 16 224 224 --threads 1 \
        [--iters 1] [--warmup 1] [--repeats 3] [--onnx-dir DIR] \
        [--graph-optimization all] [--json]

What is measured:

* One model is built (random weights, ``init_detector`` without a
  checkpoint); for each keep rate it is exported to ONNX
  (``evad_mm.deployment.export_onnx``, batch size ``--batch-size``) and
  opened in an onnxruntime CPU session with ``--threads`` intra-op threads,
  the same number torch uses (``torch.set_num_threads``).
* PyTorch runs ``EVAD.predict`` under ``torch.no_grad()`` (as
  ``tools/analysis/benchmark.py``); onnxruntime runs the exported graph on
  the same normalised clips, then picks the actors in numpy
  (``EVADOnnxRunner.run`` + ``actors``). With random weights no person score
  reaches the threshold, so both give all queries to the action head: the
  same work.
* Timing is interleaved: after ``--warmup`` calls of every variant, each of
  ``--repeats`` rounds runs ``--iters`` calls of every (backend, keep rate)
  in turn. clips/s is the median over rounds.
* Memory, per variant in a fresh process (this script with
  ``--memory-probe``), so that no allocator cache or onnxruntime arena
  of another variant hides it: ``peak_rss_growth_mb`` is the resident-set
  high-water mark during the first call minus the resident set just before
  it, after the model (PyTorch) or the session (onnxruntime, default
  options) is loaded and the clip made (Linux ``/proc/self/status``):
  what an inference adds on top of weights and runtime, one-off
  initialisation of the first call included. ``tensor_peak_mb`` (PyTorch
  only, in this process after timing): the peak of tensor memory of one
  call from ``torch.profiler``'s allocation events
  (``tools/analysis/benchmark.py``).
"""
import argparse
import json
import os
import os.path as osp
import re
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, Optional, Sequence

import torch

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))
sys.path.insert(0, osp.join(REPO, 'tools', 'analysis'))
from analysis_utils import (build_detector, default_shape,  # noqa: E402
                            format_columns, format_value)
from benchmark import (_reset_rss_hwm, _rss_hwm_mb, make_samples,  # noqa
                       make_step, peak_memory)

BACKENDS = ('pytorch', 'onnxruntime')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='EVAD in PyTorch and onnxruntime, interleaved: clips/s '
        'and peak memory at several keep rates')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--keep-rates', type=float, nargs='+', default=[1.0, 0.7])
    parser.add_argument(
        '--shape', type=int, nargs=3, metavar=('T', 'H', 'W'),
        help='clip size (default: backbone num_frames x img_size^2)')
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--iters', type=int, default=1,
                        help='calls per variant per round')
    parser.add_argument('--warmup', type=int, default=1,
                        help='untimed calls per variant')
    parser.add_argument('--repeats', type=int, default=3,
                        help='interleaved rounds')
    parser.add_argument(
        '--threads', type=int, default=None,
        help='intra-op threads of torch and onnxruntime (default: torch\'s '
        'default, for both)')
    parser.add_argument(
        '--graph-optimization',
        default='all',
        choices=['disable', 'basic', 'extended', 'all'],
        help='onnxruntime graph optimisation level')
    parser.add_argument(
        '--onnx-dir',
        help='keep the exported files here and reuse those that exist '
        '(default: a temporary folder)')
    parser.add_argument('--no-memory', action='store_true')
    parser.add_argument(
        '--memory-probe',
        nargs=2,
        metavar=('BACKEND', 'FILE'),
        help=argparse.SUPPRESS)  # internal: one variant's memory, see above
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', action='store_true',
                        help='print one JSON line last')
    args = parser.parse_args(argv)
    for name in ('batch_size', 'iters', 'repeats'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1')
    if args.threads is not None and args.threads < 1:
        parser.error('--threads must be >= 1')
    return args


def _rss_mb() -> Optional[float]:
    try:
        with open('/proc/self/status') as f:
            match = re.search(r'VmRSS:\s+(\d+) kB', f.read())
        return int(match.group(1)) / 1024 if match else None
    except OSError:
        return None


def rss_growth(call: Callable[[], Any]) -> Optional[float]:
    """Resident-set high-water mark during ``call()`` minus the resident set
    before it, in MB (None where /proc does not tell)."""
    before = _rss_mb()
    if before is None or not _reset_rss_hwm():
        return None
    call()
    peak = _rss_hwm_mb()
    return None if peak is None else peak - before


def memory_probe(args: argparse.Namespace) -> Optional[float]:
    """In this (fresh) process: the RSS growth of one first call of
    ``args.memory_probe`` = (backend, ONNX file), at ``args.keep_rates[0]``.
    """
    backend, path = args.memory_probe
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if backend == 'pytorch':
        model = build_detector(args.config, keep_rate=args.keep_rates[0])
        shape = list(args.shape) if args.shape else default_shape(model)
        inputs = torch.randn(args.batch_size, 3, *shape)
        step = make_step(model, inputs, make_samples(
            args.batch_size, shape[1:], inputs.device), train=False)
        return rss_growth(step)
    from evad_mm.deployment.ort_runner import EVADOnnxRunner
    runner = EVADOnnxRunner(path, intra_op_threads=torch.get_num_threads(),
                            graph_optimization=args.graph_optimization)
    clips = torch.randn(args.batch_size, 3,
                        *runner.info.clip_shape[1:]).numpy()
    return rss_growth(lambda: runner.actors(runner.run(clips)))


def probe_in_fresh_process(args: argparse.Namespace, backend: str,
                           rate: float, path: str) -> Optional[float]:
    """:func:`memory_probe` of one variant in a new Python process."""
    command = [
        sys.executable, osp.abspath(__file__), args.config, '--keep-rates',
        str(rate), '--batch-size', str(args.batch_size),
        '--graph-optimization', args.graph_optimization, '--seed',
        str(args.seed), '--memory-probe', backend, path
    ]
    if args.shape:
        command += ['--shape', *map(str, args.shape)]
    if args.threads:
        command += ['--threads', str(args.threads)]
    proc = subprocess.run(command, capture_output=True, text=True)
    found = re.findall(r'^rss_growth_mb=(\S+)$', proc.stdout, re.M)
    if proc.returncode != 0 or not found:
        raise RuntimeError(f'memory probe of {backend} rho {rate:g} failed:'
                           f'\n{proc.stderr[-2000:]}')
    return None if found[-1] == 'None' else float(found[-1])


def export_models(model, keep_rates: Sequence[float], shape: Sequence[int],
                  batch_size: int, folder: str) -> Dict[float, str]:
    """One ONNX file per keep rate (existing files are reused)."""
    from evad_mm.deployment import export_onnx
    files = {}
    for rate in keep_rates:
        path = osp.join(folder, f'evad_rho{rate:g}_b{batch_size}_'
                        f'{"x".join(map(str, shape))}.onnx')
        if not osp.isfile(path):
            model.set_keep_rate(rate)
            start = time.perf_counter()
            export_onnx(model, path, shape, batch_size=batch_size,
                        cfg=model.cfg)
            print(f'exported rho {rate:g} to {path} in '
                  f'{time.perf_counter() - start:.0f} s', file=sys.stderr)
        files[rate] = path
    return files


def run(args: argparse.Namespace) -> Dict[str, Any]:
    from evad_mm.deployment.ort_runner import EVADOnnxRunner
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    model = build_detector(args.config)
    shape = list(args.shape) if args.shape else default_shape(model)
    inputs = torch.randn(args.batch_size, 3, *shape)
    samples = make_samples(args.batch_size, shape[1:], inputs.device)
    folder = args.onnx_dir or tempfile.mkdtemp(prefix='evad_onnx_')
    os.makedirs(folder, exist_ok=True)
    files = export_models(model, args.keep_rates, shape, args.batch_size,
                          folder)

    runners = {
        rate: EVADOnnxRunner(files[rate], intra_op_threads=threads,
                             graph_optimization=args.graph_optimization)
        for rate in args.keep_rates
    }
    torch_step = make_step(model, inputs, samples, train=False)
    clips = inputs.numpy()

    def ort_call(r):
        return sum(len(a) for a in r.actors(r.run(clips)))

    def call(variant):
        backend, rate = variant
        if backend == 'pytorch':
            model.set_keep_rate(rate)
            return torch_step()
        return ort_call(runners[rate])

    variants = [(b, r) for r in args.keep_rates for b in BACKENDS]
    actors = {}
    for _ in range(args.warmup):
        for v in variants:
            actors[v] = call(v)
    times = {v: [] for v in variants}
    for _ in range(args.repeats):
        for v in variants:
            if v[0] == 'pytorch':
                model.set_keep_rate(v[1])
            start = time.perf_counter()
            for _ in range(args.iters):
                actors[v] = call(v)
            times[v].append(time.perf_counter() - start)
    memory = {}
    if not args.no_memory:
        for v in variants:
            backend, rate = v
            memory[v] = dict(
                peak_rss_growth_mb=probe_in_fresh_process(
                    args, backend, rate, files[rate]),
                tensor_peak_mb=None)
            if backend == 'pytorch':
                model.set_keep_rate(rate)
                memory[v]['tensor_peak_mb'] = peak_memory(
                    torch_step, inputs.device)['peak_mem_mb']
    per_call = args.batch_size * args.iters
    ref = {r: statistics.median([per_call / t
                                 for t in times[('pytorch', r)]])
           for r in args.keep_rates}
    results = []
    for v in variants:
        rates = [per_call / t for t in times[v]]
        results.append(
            dict(
                backend=v[0],
                keep_rate=v[1],
                clips_per_s=statistics.median(rates),
                clips_per_s_all=rates,
                vs_pytorch=statistics.median(rates) / ref[v[1]],
                actors_per_call=actors.get(v),
                onnx_file=files[v[1]] if v[0] == 'onnxruntime' else None,
                **memory.get(v, dict(peak_rss_growth_mb=None,
                                     tensor_peak_mb=None))))
    import onnxruntime
    return dict(
        config=args.config,
        shape=shape,
        batch_size=args.batch_size,
        threads=threads,
        graph_optimization=args.graph_optimization,
        torch=torch.__version__,
        onnxruntime=onnxruntime.__version__,
        iters=args.iters,
        warmup=args.warmup,
        repeats=args.repeats,
        results=results)


def format_table(report: Dict[str, Any]) -> str:
    head = ('backend', 'keep_rate', 'clips/s', 'vs PyTorch', 'actors',
            'peak_rss_growth_MB', 'tensor_peak_MB')
    rows = [head]

    for r in report['results']:
        rows.append((r['backend'], f"{r['keep_rate']:g}",
                     format_value(r['clips_per_s'], '.3f'),
                     format_value(r['vs_pytorch'], '.2f') + 'x',
                     format_value(r['actors_per_call'], 'd'),
                     format_value(r['peak_rss_growth_mb'], '.0f'),
                     format_value(r['tensor_peak_mb'], '.0f')))
    return format_columns(rows)


def main(argv: Optional[Sequence[str]] = None) -> Optional[Dict[str, Any]]:
    args = parse_args(argv)
    if args.memory_probe:
        print(f'rss_growth_mb={memory_probe(args)}')
        return None
    report = run(args)
    print(f"config: {report['config']}  input: {report['batch_size']}x3x"
          f"{'x'.join(map(str, report['shape']))}  threads: "
          f"{report['threads']}  torch {report['torch']}, onnxruntime "
          f"{report['onnxruntime']} (graph optimisation "
          f"{report['graph_optimization']})  {report['repeats']} rounds x "
          f"{report['iters']} iters, {report['warmup']} warm-up")
    print(format_table(report))
    if args.json:
        print(json.dumps(report))
    return report


if __name__ == '__main__':
    sys.path.insert(0, REPO)
    main()
