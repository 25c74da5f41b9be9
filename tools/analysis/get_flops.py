"""Count the GFLOPs of an EVAD detector, in total and per part.

Usage::

    python tools/analysis/get_flops.py configs/evad_vitb_ava.py \
        --shape 16 224 224 --keep-rate 0.7 [--num-actors 100] [--json]

How the counting is done (the paper's convention, which is fvcore's):

* mmengine's ``FlopAnalyzer`` (a port of fvcore's ``FlopCountAnalysis``)
  traces one inference pass of a (1, 3, T, H, W) input with its default
  handles: one multiply-add is one FLOP for ``linear``/``matmul``/``bmm``/
  ``einsum``/convolutions; norms and nearest upsampling are counted as
  fvcore does; element-wise ops, softmax, GELU, RoIAlign (an mmcv
  ``autograd.Function``) and indexing count nothing.
* Attention matmuls are counted. mmengine has no handle for
  ``aten::scaled_dot_product_attention`` (the fused path of
  :class:`evad_mm.models.layers.transformer.Attention`; it would count 0), so
  one is registered here: ``q @ k^T`` plus ``attn @ v``, i.e.
  ``B * heads * Nq * Nk * (d_qk + d_v)``. The pruning blocks always take the
  eager path (``@`` -> ``aten::matmul``, counted the same way); its
  importance scores, a query-weighted column sum computed as a vector @
  matrix ``aten::matmul``, are what the reference computes with element-wise
  ops, so they are counted as 0 here too.
  ``--eager`` counts with eager attention everywhere
  (``EVAD.set_fused_attn(False)``); it gives the same total (a
  self-check). ``aten::baddbmm`` (``nn.MultiheadAttention`` with a mask) is
  counted like ``bmm``.
* Parts are the scopes of the detector's modules: ``backbone`` (patch
  embedding, encoder blocks, final norm), ``neck`` (pyramid resampling + FPN),
  ``localization`` (``rpn_head`` + ``roi_head``: the Sparse R-CNN stages on
  all learned proposals) and ``context_refinement`` (``action_head``:
  projection, 3-D RoIAlign, decoder and classifiers). ``other`` is whatever
  runs outside them (0 for EVAD: box decoding and selection count nothing).
* What is traced: ``EVAD.forward_tensors`` (pad, encoder, FPN, Sparse
  R-CNN stages and the action decoder on every one of the learned
  proposals). Inference proper keeps the boxes whose person score passes a
  threshold, a data-dependent number; all proposals is what an untrained
  model (no score above 0.7) feeds the action head, an upper bound.
  ``--num-actors N`` sets ``roi_head.test_cfg.num_actors=N`` and traces
  ``EVAD.predict`` instead, whose action head then sees the N
  highest-scoring boxes. Each actor costs the ViT-B decoder about 0.03
  GFLOPs at 16x224x224, so the choice moves the total by at most ~3 GFLOPs.
  With all 100 proposals the ViT-B totals are the paper's to 0.1 GFLOPs
  (223.8 / 134.2 at 16x224x224, 424.5 / 242.8 at 16x288x288 for rho 1.0 /
  0.7), so that is evidently what it counted.
* Weights are randomly initialised (``init_weights()`` with
  ``backbone.init_cfg`` dropped: no download); the count depends only on
  shapes, since the number of kept tokens is fixed by the keep rate.
"""
import argparse
import json
import os.path as osp
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # analysis_utils
from analysis_utils import (add_model_arguments, build_detector,  # noqa: E402
                            default_shape)

PARTS = ('backbone', 'neck', 'localization', 'context_refinement')
# the detector's modules in each part
PART_MODULES = dict(
    backbone=('backbone', ),
    neck=('neck', ),
    localization=('rpn_head', 'roi_head'),
    context_refinement=('action_head', ))


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='GFLOPs of an EVAD model, total and per part')
    add_model_arguments(parser)
    parser.add_argument(
        '--keep-rate',
        type=float,
        nargs='+',
        help='token keep rate rho of the backbone, one or one per pruning '
        'layer (default: the config)')
    parser.add_argument(
        '--eager',
        action='store_true',
        help='count with eager attention everywhere (same result)')
    return parser.parse_args(argv)


def sdpa_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """``aten::scaled_dot_product_attention``: two matmuls, ``q @ k^T``
    (B*h*Nq*Nk*d) and ``attn @ v`` (B*h*Nq*Nk*dv)."""
    from mmengine.analysis.jit_handles import get_shape
    from math import prod
    q, k, v = (get_shape(x) for x in inputs[:3])
    batch = prod(q[:-2])
    nq, d = q[-2:]
    nk, dv = k[-2], v[-1]
    return batch * nq * nk * (d + dv)


def baddbmm_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """``aten::baddbmm(bias, a, b)``: the bmm part."""
    from mmengine.analysis.jit_handles import get_shape
    n, c, t = get_shape(inputs[1])
    return n * c * t * get_shape(inputs[2])[-1]


def matmul_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """mmengine's matmul handle, except that a vector @ matrix product (the
    pruning blocks' importance scores) counts 0."""
    from mmengine.analysis.jit_handles import get_shape, matmul_flop_jit as mm
    if len(get_shape(inputs[0])) == 1:
        return 0
    return mm(inputs, outputs)


class InferenceAsTensors(nn.Module):
    """An EVAD detector's inference as a function of tensors, for the
    tracer; the detector is the only child, so its modules keep their names.

    ``EVAD.forward_tensors`` (every query), or ``EVAD.predict`` when
    ``roi_head.test_cfg.num_actors`` is set.

    Args:
        detector (nn.Module): An :class:`EVAD` model.
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, inputs: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Boxes (B, n, 4), person scores (B, n) and action scores (B, n,
        num_classes) of the n actors per clip the action head saw (all
        three: the tracer drops what no output needs)."""
        test_cfg = self.detector.roi_head.test_cfg or {}
        if test_cfg.get('num_actors') is None:
            return self.detector.forward_tensors(inputs)
        from mmdet.structures import DetDataSample
        samples = [
            DetDataSample(metainfo=dict(img_shape=tuple(inputs.shape[-2:])))
            for _ in range(len(inputs))
        ]
        preds = [
            s.pred_instances for s in self.detector.predict(inputs, samples)
        ]
        return tuple(
            torch.stack([p[key] for p in preds])
            for key in ('bboxes', 'actor_scores', 'scores'))


def count_flops(model: nn.Module, shape: Sequence[int]) -> Dict[str, Any]:
    """GFLOPs of one (1, C, T, H, W) clip through ``model`` as it is set up
    (keep rate, attention, ``roi_head.test_cfg.num_actors``).

    Returns:
        dict: ``gflops``, one entry per part in :data:`PARTS`, ``other``,
        ``num_actors`` (boxes the action head saw), ``unsupported_ops``.
    """
    from mmengine.analysis import FlopAnalyzer
    traced = InferenceAsTensors(model).eval()
    in_channels = getattr(model.backbone, 'in_channels', 3)
    inputs = torch.randn(1, in_channels, *shape)
    with torch.no_grad():
        analyzer = FlopAnalyzer(traced, (inputs, ))
        analyzer.set_op_handle(
            'aten::scaled_dot_product_attention', sdpa_flop_jit,
            'aten::baddbmm', baddbmm_flop_jit, 'aten::matmul',
            matmul_flop_jit)
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        total = analyzer.total()
        by_module = analyzer.by_module()
        unsupported = dict(analyzer.unsupported_ops())
        boxes = traced(inputs)[0]
    part_flops = {
        part: sum(by_module[f'detector.{name}']
                  for name in PART_MODULES[part])
        for part in PARTS
    }
    result = dict(gflops=total / 1e9)
    for part in PARTS:
        result[part] = part_flops[part] / 1e9
    result['other'] = (total - sum(part_flops.values())) / 1e9
    result['num_actors'] = int(boxes.shape[1])
    result['unsupported_ops'] = unsupported
    return result


def format_table(result: Dict[str, Any]) -> str:
    rows = [('part', 'GFLOPs', 'share')]
    total = result['gflops']
    for part in PARTS + ('other', ):
        rows.append((part, f'{result[part]:.2f}',
                     f'{100 * result[part] / total:.1f}%'))
    rows.append(('total', f'{total:.2f}', '100.0%'))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [
        f'{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}'
        for r in rows
    ]
    lines.insert(1, '-' * len(lines[0]))
    lines.insert(len(lines) - 1, '-' * len(lines[0]))
    return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    keep_rate = None
    if args.keep_rate is not None:
        keep_rate = (args.keep_rate[0]
                     if len(args.keep_rate) == 1 else args.keep_rate)
    model = build_detector(
        args.config,
        keep_rate,
        fused_attn=False if args.eager else None,
        num_actors=args.num_actors)
    shape = list(args.shape) if args.shape else default_shape(model)
    result = count_flops(model, shape)
    rates = list(model.backbone.keep_rate) if hasattr(
        model.backbone, 'keep_rate') else [1.0]
    result['shape'] = shape
    result['keep_rate'] = rates[0] if len(set(rates)) == 1 else rates
    if not args.json:
        print(f'config: {args.config}')
        print(f'input: 1x3x{shape[0]}x{shape[1]}x{shape[2]}, keep rate '
              f"{result['keep_rate']}, actors to the action head "
              f"{result['num_actors']}, attention "
              f"{'eager' if args.eager else 'as configured'}")
        print(format_table(result))
        if result['unsupported_ops']:
            ops = ', '.join(f'{k} x{v}'
                            for k, v in result['unsupported_ops'].items())
            print(f'not counted (no FLOP handle): {ops}')
    else:
        print(json.dumps(result))
    return result


if __name__ == '__main__':
    sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
        osp.abspath(__file__)))))
    main()
