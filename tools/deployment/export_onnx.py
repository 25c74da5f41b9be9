"""Export EVAD to one ONNX file: a clip in, boxes and actions out.

Usage::

    python tools/deployment/export_onnx.py CONFIG CHECKPOINT OUT.onnx \
        [--keep-rate R [R R]] [--shape T H W] [--batch-size B] [--opset N] \
        [--dynamic-batch] [--cfg-options KEY=VALUE ...]

``CHECKPOINT`` may be ``none`` to export random weights (benchmarks,
tests). The graph holds the whole detector (backbone with token pruning,
pyramid neck and FPN, the Sparse R-CNN localization stages, the actor rule
of ``roi_head.test_cfg``, the context-refinement head) in standard ONNX ops
that onnxruntime's CPU provider runs as installed from PyPI. The keep rate,
``roi_head.test_cfg`` and the clip shape are fixed at export and written
into the file's metadata with the config and the class names.

After writing, the file is checked with ``onnx.checker`` and onnxruntime is
compared with PyTorch (mmcv's own ops) on random clips. The largest
differences are printed next to PyTorch's own spread on the same clip
(fused against eager attention: float32 rounding alone). The exit code is
1 if an actor or a kept token differs or, with a checkpoint, a difference
exceeds ``--box-tol`` / ``--score-tol``. Random weights (``none``) send
boxes far out of the frame, where rounding is amplified: their values are
printed, not judged.
"""
import argparse
import logging
import os.path as osp
import sys
import time
from typing import List, Optional, Sequence

import torch

TEST_SEED = 0


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Export EVAD to one ONNX file and check it against '
        'PyTorch')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        'checkpoint', help="checkpoint file, or 'none' for random weights")
    parser.add_argument('out', help='the .onnx file to write')
    parser.add_argument(
        '--keep-rate',
        type=float,
        nargs='+',
        default=None,
        help='backbone keep rate(s) fixed in the graph (one, or one per '
        "pruning layer; default: the config's)")
    parser.add_argument(
        '--shape',
        type=int,
        nargs=3,
        metavar=('T', 'H', 'W'),
        help='clip size of the graph: the frames after the test pipeline '
        "(default: the test pipeline's clip_len and fixed Resize, if any)")
    parser.add_argument(
        '--batch-size', type=int, default=1, help='clips per run')
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument(
        '--dynamic-batch',
        action='store_true',
        help='any number of clips per run (ONNX Scan over one-clip graph)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        default=[],
        metavar='KEY=VALUE',
        help='config overrides, e.g. model.roi_head.test_cfg.score_thr=0.5')
    parser.add_argument(
        '--check-clips',
        type=int,
        default=2,
        help='random clips to compare onnxruntime with PyTorch on (0: no '
        'comparison)')
    parser.add_argument(
        '--box-tol',
        type=float,
        default=1e-3,
        help='largest box difference accepted, in pixels')
    parser.add_argument(
        '--score-tol',
        type=float,
        default=1e-4,
        help='largest person / action score difference accepted')
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error('--batch-size must be >= 1')
    if args.dynamic_batch and args.batch_size != 1:
        parser.error('--dynamic-batch takes any batch size: drop '
                     '--batch-size')
    if args.shape and min(args.shape) < 1:
        parser.error('--shape T H W must be positive')
    return args


def cfg_options(pairs: Sequence[str]) -> dict:
    """``KEY=VALUE`` strings as mmengine's ``DictAction`` parses them."""
    from mmengine.config import DictAction
    options = {}
    for pair in pairs:
        if '=' not in pair:
            raise ValueError(f'--cfg-options {pair!r}: use KEY=VALUE')
        key, value = pair.split('=', 1)
        options[key] = DictAction._parse_iterable(value)
    return options


def clip_shape_of(cfg) -> List[int]:
    """(T, H, W) from the test pipeline: ``SampleAVAFrames.clip_len`` and a
    ``Resize`` to a fixed size; a ValueError when the size depends on the
    video (a short-side resize)."""
    from evad_mm.apis import inference_pipeline
    clip_len, _, transforms = inference_pipeline(cfg)
    for t in transforms:
        if str(t.get('type', '')).split('.')[-1] != 'Resize':
            continue
        scale = t.get('scale')
        if not t.get('keep_ratio', False) and isinstance(
                scale, (list, tuple)) and min(scale) > 0:
            return [clip_len, int(scale[1]), int(scale[0])]
        raise ValueError(
            f'the test pipeline resizes frames with scale={scale} keeping '
            'the aspect ratio, so the clip size depends on the video: give '
            f'--shape {clip_len} H W, H x W the resized frames (e.g. '
            f'{clip_len} 128 160 for 160x128 videos resized to short side '
            '128).')
    raise ValueError('the test pipeline has no Resize: give --shape T H W, '
                     'the size of the clips the model will see.')


def class_names(model, cfg) -> Optional[List[str]]:
    """Names of class ids 1, 2, ...: the checkpoint's ``dataset_meta``, else
    the config's ``classes``; None when neither matches the class count."""
    num = model.action_head.num_classes - 1
    for names in (getattr(model, 'dataset_meta', {}).get('classes'),
                  cfg.get('classes')):
        if names and len(names) == num:
            return [str(n) for n in names]
    return None


def rounding_spread(model, inputs: torch.Tensor) -> Optional[dict]:
    """How much PyTorch differs from itself on ``inputs`` when only the
    summation order changes (fused against eager attention): the float32
    floor of any comparison. None for a model without ``set_fused_attn``.
    """
    from evad_mm.deployment.export import output_differences, pytorch_outputs
    if not hasattr(model, 'set_fused_attn'):
        return None
    fused = pytorch_outputs(model, inputs)
    model.set_fused_attn(False)
    try:
        eager = pytorch_outputs(model, inputs)
    finally:
        model.set_fused_attn(True)
    return output_differences(eager, fused)


KEYS = ('boxes', 'person_scores', 'action_scores', 'actor_mask',
        'kept_tokens')


def _row(label: str, d: dict) -> str:
    return f'  {label:<24}' + '  '.join(
        f'{d[k]:>14.3g}' if isinstance(d[k], float) else f'{d[k]:>14d}'
        for k in KEYS)


def print_differences(diffs: List[dict], spreads: List[Optional[dict]],
                      box_tol: float, score_tol: float,
                      random_weights: bool) -> bool:
    """Print the comparison table; True when the check passes: the same
    actors and kept tokens and, with trained weights, differences within
    the tolerances."""
    print('largest |difference| per random clip (boxes in pixels; '
          'actor_mask / kept_tokens: differing entries):')
    print(f'  {"":<24}' + '  '.join(f'{k:>14}' for k in KEYS))
    for i, (d, spread) in enumerate(zip(diffs, spreads)):
        print(_row(f'clip {i}: onnxruntime', d))
        if spread is not None:
            print(_row('  PyTorch eager/fused', spread))
    same = all(d['actor_mask'] == 0 and d['kept_tokens'] == 0 for d in diffs)
    close = all(d['boxes'] <= box_tol and d['person_scores'] <= score_tol
                and d['action_scores'] <= score_tol for d in diffs)
    if random_weights and same and not close:
        print('check: ok (same actors and kept tokens). The value '
              'differences are not judged with random weights: their boxes '
              'lie far outside the frame, where float32 rounding alone moves '
              "them (see PyTorch's own eager/fused spread); with a trained "
              f'checkpoint they must be within {box_tol} px and {score_tol}.')
        return True
    ok = same and close
    print('check: ' + ('ok' if ok else
                       f'MISMATCH (tolerances: boxes {box_tol} px, scores '
                       f'{score_tol}; actors and kept tokens equal)'))
    return ok


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    from mmengine.logging import MMLogger

    from evad_mm.apis import RandomWeightsWarning, init_detector
    from evad_mm.deployment import compare_with_pytorch, export_onnx
    from evad_mm.deployment.ort_runner import EVADOnnxRunner
    if not osp.isfile(args.config):
        print(f'error: config not found: {args.config}', file=sys.stderr)
        return 2
    checkpoint = None if args.checkpoint.lower() == 'none' else \
        args.checkpoint
    if checkpoint is not None and not osp.isfile(checkpoint):
        print(f'error: checkpoint not found: {checkpoint}', file=sys.stderr)
        return 2
    logger = MMLogger.get_current_instance()
    logger.setLevel(logging.WARNING)
    import warnings
    with warnings.catch_warnings():
        if checkpoint is None:
            warnings.simplefilter('ignore', RandomWeightsWarning)
            print("checkpoint 'none': exporting RANDOM weights",
                  file=sys.stderr)
        try:
            model = init_detector(
                args.config, checkpoint,
                cfg_options=cfg_options(args.cfg_options))
        except (ValueError, KeyError) as err:
            print(f'error: {err}', file=sys.stderr)
            return 2
    try:
        if args.keep_rate is not None:
            model.set_keep_rate(args.keep_rate)
        shape = list(args.shape) if args.shape else clip_shape_of(model.cfg)
    except ValueError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        info = export_onnx(
            model,
            args.out,
            shape,
            batch_size=args.batch_size,
            opset=args.opset,
            dynamic_batch=args.dynamic_batch,
            cfg=model.cfg,
            classes=class_names(model, model.cfg),
            checkpoint=checkpoint)
    except (ValueError, TypeError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    batch = 'dynamic' if info.batch_size is None else info.batch_size
    print(f'wrote {args.out} ({osp.getsize(args.out) / 2**20:.1f} MiB) in '
          f'{seconds:.0f} s: clips (batch {batch}, 3, '
          f'{" x ".join(map(str, shape))}), keep rate '
          f'{"/".join(f"{r:g}" for r in info.keep_rate) or "-"}, '
          f'{info.num_proposals} queries, {info.num_classes} classes, '
          f'actor rule {info.test_cfg}, opset {info.opset}; onnx.checker: ok')
    if args.check_clips < 1:
        return 0
    runner = EVADOnnxRunner(args.out)
    generator = torch.Generator().manual_seed(TEST_SEED)
    diffs, spreads = [], []
    for _ in range(args.check_clips):
        inputs = torch.randn(info.batch_size or 2, 3, *shape,
                             generator=generator)
        diffs.append(compare_with_pytorch(model, args.out, inputs, runner))
        spreads.append(rounding_spread(model, inputs))
    ok = print_differences(diffs, spreads, args.box_tol, args.score_tol,
                           checkpoint is None)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
        osp.abspath(__file__)))))
    sys.exit(main())
