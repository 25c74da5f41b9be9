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
  ``--eager`` counts with eager attention everywhere; it gives the same total
  (a self-check). ``aten::baddbmm`` (``nn.MultiheadAttention`` with a mask)
  is counted like ``bmm``.
* Parts are the scopes of the traced modules: ``backbone`` (patch embedding,
  encoder blocks, final norm), ``neck`` (pyramid resampling + FPN),
  ``localization`` (``rpn_head`` + ``roi_head``: the Sparse R-CNN stages on
  all learned proposals) and ``context_refinement`` (``action_head``:
  projection, 3-D RoIAlign, decoder and classifiers). ``other`` is whatever
  runs outside them (0 for EVAD).
* Actors: inference keeps the boxes whose person score passes a threshold,
  a data-dependent number. For a reproducible count the ``--num-actors``
  highest-scoring of the last stage's boxes (default: all proposals, which
  is what an untrained model -- no score above 0.7 -- feeds the action head
  and therefore an upper bound) go to the action head. Each actor costs the
  ViT-B decoder about 0.03 GFLOPs at 16x224x224, so the choice moves the
  total by at most ~3 GFLOPs. With all 100 proposals the ViT-B totals are
  the paper's to 0.1 GFLOPs (223.8 / 134.2 at 16x224x224, 424.5 / 242.8 at
  16x288x288 for rho 1.0 / 0.7), so that is evidently what it counted.
* Weights are randomly initialised (``init_weights()`` with
  ``backbone.init_cfg`` dropped: no download); the count depends only on
  shapes, since the number of kept tokens is fixed by the keep rate.
"""
import argparse
import json
import os.path as osp
import sys
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

PARTS = ('backbone', 'neck', 'localization', 'context_refinement')
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='GFLOPs of an EVAD model, total and per part')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--shape',
        type=int,
        nargs=3,
        metavar=('T', 'H', 'W'),
        help='input clip size (default: backbone num_frames x img_size x '
        'img_size)')
    parser.add_argument(
        '--keep-rate',
        type=float,
        nargs='+',
        help='token keep rate(s) rho of the backbone (default: the config)')
    parser.add_argument(
        '--num-actors',
        type=int,
        default=None,
        help='boxes fed to the action head (default: all proposals)')
    parser.add_argument(
        '--eager',
        action='store_true',
        help='count with eager attention everywhere (same result)')
    parser.add_argument(
        '--json', action='store_true', help='print one JSON line last')
    return parser.parse_args(argv)


def build_detector(config: str, keep_rate=None) -> nn.Module:
    """The model of ``config`` in eval mode, default-initialised, without
    pretrained downloads; FLOPs depend on shapes only."""
    import warnings

    from evad_mm.apis import init_detector
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # random weights are expected here
        model = init_detector(config)
    if keep_rate is not None:
        model.backbone.keep_rate = keep_rate
    return model


def default_shape(model: nn.Module) -> List[int]:
    backbone = model.backbone
    size = getattr(backbone, 'img_size', None) or 224
    if isinstance(size, (tuple, list)):
        size = size[0]
    return [int(getattr(backbone, 'num_frames', 16)), int(size), int(size)]


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


class _Localization(nn.Module):
    """rpn_head + roi_head as one traced scope: FPN maps -> boxes (B, P, 4)
    and person scores (B, P) of the last stage, best first."""

    def __init__(self, rpn_head: nn.Module, roi_head: nn.Module) -> None:
        super().__init__()
        self.rpn_head = rpn_head
        self.roi_head = roi_head

    def forward(self, fpn_maps, samples):
        proposals = self.rpn_head.predict(fpn_maps, samples)
        results = self.roi_head.predict_bbox(
            fpn_maps, [s.metainfo for s in samples], proposals,
            self.roi_head.test_cfg, rescale=False)
        scores = torch.stack([r.scores for r in results])
        order = scores.argsort(dim=1, descending=True)
        boxes = torch.stack([r.bboxes for r in results])
        boxes = boxes.gather(1, order[..., None].expand(-1, -1, 4))
        return boxes, scores.gather(1, order)


class FlopCountingEVAD(nn.Module):
    """One inference pass of an EVAD detector with a fixed number of actors,
    each part a direct child so that the tracer attributes its FLOPs.

    Args:
        detector (nn.Module): An :class:`EVAD` model.
        num_actors (int, optional): Highest-scoring boxes per clip given to
            the action head; None for all proposals.
    """

    def __init__(self, detector: nn.Module,
                 num_actors: Optional[int] = None) -> None:
        super().__init__()
        self.backbone = detector.backbone
        self.neck = detector.neck
        self.localization = _Localization(detector.rpn_head,
                                          detector.roi_head)
        self.context_refinement = detector.action_head
        self.num_actors = num_actors
        # not a child: its own hooks would shadow the parts' scopes
        self._detector = [detector]

    def forward(self, inputs: Tensor):
        from mmdet.structures import DetDataSample
        from mmdet.structures.bbox import bbox2roi
        detector = self._detector[0]
        img_shape = tuple(inputs.shape[-2:])
        inputs = detector._pad(inputs)
        samples = [
            DetDataSample(
                metainfo=dict(
                    img_shape=img_shape,
                    batch_input_shape=tuple(inputs.shape[-2:])))
            for _ in range(len(inputs))
        ]
        fpn_maps, feats = detector.extract_feat(inputs)
        boxes, scores = self.localization(fpn_maps, samples)
        if self.num_actors is not None:
            boxes = boxes[:, :self.num_actors]
        rois = bbox2roi(list(boxes))
        logits = self.context_refinement(feats, rois,
                                         [img_shape] * len(inputs))
        return boxes, scores, logits[-1]


def count_flops(model: nn.Module,
                shape: Sequence[int],
                num_actors: Optional[int] = None,
                eager: bool = False) -> Dict[str, Any]:
    """GFLOPs of one (1, 3, T, H, W) clip through ``model``.

    Returns:
        dict: ``gflops``, one entry per part in :data:`PARTS`, ``other``,
        ``num_actors`` (boxes the action head saw), ``unsupported_ops``.
    """
    from mmengine.analysis import FlopAnalyzer
    wrapper = FlopCountingEVAD(model, num_actors).eval()
    attn_modules = [m for m in model.modules() if hasattr(m, 'fused_attn')]
    saved = [m.fused_attn for m in attn_modules]
    if eager:
        for m in attn_modules:
            m.fused_attn = False
    in_channels = getattr(model.backbone, 'in_channels', 3)
    inputs = torch.randn(1, in_channels, *shape)
    try:
        with torch.no_grad():
            analyzer = FlopAnalyzer(wrapper, (inputs, ))
            analyzer.set_op_handle(
                'aten::scaled_dot_product_attention', sdpa_flop_jit,
                'aten::baddbmm', baddbmm_flop_jit, 'aten::matmul',
                matmul_flop_jit)
            analyzer.unsupported_ops_warnings(False)
            analyzer.uncalled_modules_warnings(False)
            total = analyzer.total()
            by_module = analyzer.by_module()
            unsupported = dict(analyzer.unsupported_ops())
            boxes = wrapper(inputs)[0]
    finally:
        for m, fused in zip(attn_modules, saved):
            m.fused_attn = fused
    result = dict(gflops=total / 1e9)
    for part in PARTS:
        result[part] = by_module[part] / 1e9
    result['other'] = (total - sum(by_module[p] for p in PARTS)) / 1e9
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
    model = build_detector(args.config, keep_rate)
    shape = list(args.shape) if args.shape else default_shape(model)
    result = count_flops(model, shape, args.num_actors, args.eager)
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
