"""Throughput and peak memory of an EVAD model at several keep rates.

Usage::

    python tools/analysis/benchmark.py configs/evad_vitb_ava.py \
        --keep-rates 1.0 0.7 --shape 16 224 224 --batch-size 1 \
        --iters 3 --warmup 1 --repeats 5 [--attention fused eager] \
        [--train] [--device cpu|cuda] [--amp fp16|bf16] [--num-actors N] \
        [--json]

What is measured:

* One model is built (random init, no pretrained download); each variant
  (keep rate x attention implementation) only calls
  ``EVAD.set_keep_rate`` and ``EVAD.set_fused_attn`` (encoder and decoder),
  so all variants share weights.
* Inference: ``EVAD.predict`` (pad, encoder, FPN, Sparse R-CNN stages,
  actor selection, action decoder) in eval mode under ``torch.no_grad()``.
  The number of actors the action head sees is data-dependent; an untrained
  model passes all proposals (no person score reaches the threshold), which
  is also what the FLOP count assumes. ``--num-actors N`` sets
  ``roi_head.test_cfg.num_actors=N``: exactly the N best boxes per clip.
  ``--train``: one training step, ``mode='loss'`` with two ground-truth
  actors per clip, sum of the losses, ``backward()``, then the gradients
  are dropped (no optimizer update).
* ``--amp fp16|bf16``: the step runs under ``torch.autocast`` on the device
  with that dtype (weights stay float32). Training with fp16 also scales
  the loss with ``torch.amp.GradScaler`` before ``backward()``, as mixed
  precision training does (mmengine's ``AmpOptimWrapper`` too); as no
  optimizer step is taken, the scaler only multiplies the loss.
* Timing is interleaved: after ``--warmup`` calls of every variant, each of
  ``--repeats`` rounds runs ``--iters`` calls of every variant in turn, so
  slow drifts of a shared machine hit all variants alike. clips/s is the
  median over rounds of ``batch * iters / time``; ``speedup`` is the ratio of
  medians to the first variant, ``speedup_paired`` the median of the
  per-round ratios (more robust to load changes).
* Memory, in one extra call per variant after timing: ``peak_mem_mb`` is the
  peak of tensor memory allocated during the call over what was allocated
  before it (weights, inputs). On CUDA that is
  ``torch.cuda.max_memory_allocated`` minus the allocation before the call;
  on CPU, where torch has no allocator statistics, it is the running sum of
  the allocation and free events recorded by ``torch.profiler`` with
  ``profile_memory=True`` (the same quantity, exact to the byte, without
  allocator caching or fragmentation). ``peak_rss_mb`` (Linux CPU only) is
  the process's resident-set high-water mark during that call (reset via
  ``/proc/self/clear_refs``): it includes weights, the Python runtime and
  malloc caching, so it is an upper bound of what the call needs.

On a CPU shared with other jobs, use ``--threads 1``: with more threads than
free cores every OpenMP parallel region waits for a descheduled thread, which
adds milliseconds to each of the many small ops of the localization and
action heads (independent of the keep rate) and hides the pruning speed-up.
"""
import argparse
import json
import os.path as osp
import re
import statistics
import sys
import time
from typing import Any, Callable, Dict, Optional, Sequence

import torch
from torch import nn

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # analysis_utils
from analysis_utils import (add_model_arguments, build_detector,  # noqa: E402
                            default_shape, format_columns, format_value)

AMP_DTYPES = dict(fp16=torch.float16, bf16=torch.bfloat16)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='EVAD throughput and peak memory at several keep rates')
    add_model_arguments(parser)
    parser.add_argument(
        '--keep-rates',
        type=float,
        nargs='+',
        default=[1.0, 0.7],
        help='keep rates rho to compare; the first is the reference')
    parser.add_argument(
        '--attention',
        nargs='+',
        choices=['fused', 'eager'],
        default=None,
        help='attention implementations to compare at every keep rate '
        "(default: 'fused'; e.g. --keep-rates 1.0 --attention fused eager)")
    parser.add_argument(
        '--eager',
        action='store_true',
        help="shorthand for --attention eager")
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument(
        '--iters', type=int, default=5, help='calls per variant per round')
    parser.add_argument(
        '--warmup', type=int, default=2, help='untimed calls per variant')
    parser.add_argument(
        '--repeats', type=int, default=3, help='interleaved rounds')
    parser.add_argument(
        '--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument(
        '--amp',
        choices=sorted(AMP_DTYPES),
        default=None,
        help='run the step under torch.autocast with this dtype (fp16 '
        'training also scales the loss with a GradScaler)')
    parser.add_argument(
        '--threads',
        type=int,
        default=None,
        help='torch intra-op threads (default: torch default)')
    parser.add_argument(
        '--train',
        action='store_true',
        help='time a training step (loss + backward) instead of inference')
    parser.add_argument(
        '--no-memory', action='store_true', help='skip the memory pass')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    if args.attention is None:
        args.attention = ['eager'] if args.eager else ['fused']
    for name in ('batch_size', 'iters', 'repeats'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1')
    if args.warmup < 0:
        parser.error('--warmup must be >= 0')
    return args


def make_samples(batch: int, hw: Sequence[int], device: torch.device,
                 num_classes: Optional[int] = None) -> list:
    """ActionDataSamples of (H, W) ``hw`` frames; with ``num_classes``, two
    ground-truth actors each (for training)."""
    from mmaction.structures import ActionDataSample
    from mmengine.structures import InstanceData
    h, w = hw
    boxes = torch.tensor([[0.10 * w, 0.10 * h, 0.45 * w, 0.90 * h],
                          [0.50 * w, 0.20 * h, 0.90 * w, 0.95 * h]])
    samples = []
    for i in range(batch):
        sample = ActionDataSample()
        sample.set_metainfo(dict(img_shape=tuple(hw)))
        if num_classes is not None:
            labels = torch.zeros(2, num_classes)
            labels[0, 1] = labels[1, min(2, num_classes - 1)] = 1
            sample.gt_instances = InstanceData(
                bboxes=boxes.to(device), labels=labels.to(device))
        samples.append(sample)
    return samples


def set_variant(model: nn.Module, keep_rate: float, attention: str) -> None:
    model.set_keep_rate(keep_rate)
    model.set_fused_attn(attention == 'fused')


def make_step(model: nn.Module,
              inputs: torch.Tensor,
              samples: list,
              train: bool,
              amp: Optional[str] = None) -> Callable[[], int]:
    """A callable running one step; returns the number of actors it saw.

    Args:
        model (nn.Module): The detector.
        inputs (Tensor): (B, C, T, H, W) clips on the model's device.
        samples (list): ``make_samples`` output, with ground truth for
            ``train``.
        train (bool): Loss + backward instead of ``predict``.
        amp (str, optional): 'fp16' or 'bf16': the step under
            ``torch.autocast``; fp16 training scales the loss with a
            ``GradScaler``.
    """
    autocast = torch.autocast(
        inputs.device.type,
        dtype=AMP_DTYPES[amp] if amp else None,
        enabled=amp is not None)
    if train:
        model.train()
        scaler = torch.amp.GradScaler(
            inputs.device.type, enabled=amp == 'fp16')

        def step() -> int:
            with autocast:
                losses = model(inputs, samples, mode='loss')
                loss, _ = model.parse_losses(losses)
            scaler.scale(loss).backward()
            model.zero_grad(set_to_none=True)
            return sum(len(s.gt_instances) for s in samples)
    else:
        model.eval()

        def step() -> int:
            with torch.no_grad(), autocast:
                preds = model(inputs, samples, mode='predict')
            return sum(len(p.pred_instances) for p in preds)

    return step


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _rss_hwm_mb() -> Optional[float]:
    try:
        with open('/proc/self/status') as f:
            match = re.search(r'VmHWM:\s+(\d+) kB', f.read())
        return int(match.group(1)) / 1024 if match else None
    except OSError:
        return None


def _reset_rss_hwm() -> bool:
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def peak_memory(step: Callable[[], int],
                device: torch.device) -> Dict[str, Optional[float]]:
    """Peak extra tensor memory (MB) of one call, and the peak RSS (MB)."""
    if device.type == 'cuda':
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        _sync(device)
        peak = torch.cuda.max_memory_allocated(device) - before
        return dict(peak_mem_mb=peak / 2**20, peak_rss_mb=None)

    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile
    rss_ok = _reset_rss_hwm()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as p:
        step()
    rss = _rss_hwm_mb() if rss_ok else None
    events = []
    stack = list(p.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation and \
                node.extra_fields.device.type == 'cpu':
            events.append((node.start_time_ns, node.extra_fields.alloc_size))
        stack.extend(node.children)
    current = peak = 0
    for _, size in sorted(events, key=lambda e: e[0]):
        current += size
        peak = max(peak, current)
    return dict(peak_mem_mb=peak / 2**20, peak_rss_mb=rss)


def run(args: argparse.Namespace) -> Dict[str, Any]:
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = build_detector(
        args.config, num_actors=args.num_actors, device=args.device)
    shape = list(args.shape) if args.shape else default_shape(model)
    channels = getattr(model.backbone, 'in_channels', 3)
    inputs = torch.randn(args.batch_size, channels, *shape, device=device)
    samples = make_samples(
        args.batch_size, shape[1:], device,
        model.action_head.num_classes if args.train else None)
    variants = [(r, a) for r in args.keep_rates for a in args.attention]
    step = make_step(model, inputs, samples, args.train, args.amp)

    def call(variant):
        set_variant(model, *variant)
        return step()

    actors = {}
    for _ in range(args.warmup):
        for v in variants:
            actors[v] = call(v)
    times = {v: [] for v in variants}
    for _ in range(args.repeats):
        for v in variants:
            set_variant(model, *v)
            _sync(device)
            start = time.perf_counter()
            for _ in range(args.iters):
                actors[v] = step()
            _sync(device)
            times[v].append(time.perf_counter() - start)
    memory = {}
    if not args.no_memory:
        for v in variants:
            set_variant(model, *v)
            memory[v] = peak_memory(step, device)

    clips = args.batch_size * args.iters
    ref = variants[0]
    results = []
    for v in variants:
        rates = [clips / t for t in times[v]]
        paired = [t_ref / t for t_ref, t in zip(times[ref], times[v])]
        results.append(
            dict(
                keep_rate=v[0],
                attention=v[1],
                clips_per_s=statistics.median(rates),
                clips_per_s_all=rates,
                ms_per_clip=1e3 / statistics.median(rates),
                speedup=statistics.median(rates) /
                statistics.median([clips / t for t in times[ref]]),
                speedup_paired=statistics.median(paired),
                actors_per_call=actors.get(v),
                **memory.get(v, dict(peak_mem_mb=None, peak_rss_mb=None))))
    return dict(
        config=args.config,
        mode='train' if args.train else 'inference',
        shape=shape,
        batch_size=args.batch_size,
        device=args.device,
        amp=args.amp,
        threads=torch.get_num_threads(),
        iters=args.iters,
        warmup=args.warmup,
        repeats=args.repeats,
        results=results)


def format_table(report: Dict[str, Any]) -> str:
    head = ('keep_rate', 'attention', 'clips/s', 'ms/clip', 'speedup',
            'paired', 'peak_mem_MB', 'peak_rss_MB')
    rows = [head]
    for r in report['results']:
        rows.append((f"{r['keep_rate']:g}", r['attention'],
                     format_value(r['clips_per_s'], '.3f'),
                     format_value(r['ms_per_clip'], '.0f'),
                     format_value(r['speedup'], '.3f') + 'x',
                     format_value(r['speedup_paired'], '.3f') + 'x',
                     format_value(r['peak_mem_mb'], '.0f'),
                     format_value(r['peak_rss_mb'], '.0f')))
    return format_columns(rows)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    report = run(args)
    if args.json:
        print(json.dumps(report))
    else:
        print(f"config: {report['config']}  mode: {report['mode']}  input: "
              f"{report['batch_size']}x3x{'x'.join(map(str, report['shape']))}"
              f"  device: {report['device']} ({report['threads']} threads)"
              f"{'  amp: ' + report['amp'] if report['amp'] else ''}  "
              f"{report['repeats']} rounds x {report['iters']} iters, "
              f"{report['warmup']} warm-up")
        print(format_table(report))
    return report


if __name__ == '__main__':
    sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
        osp.abspath(__file__)))))
    main()
