"""The actor rule of ``roi_head.test_cfg`` as a fixed-shape boolean mask.

:meth:`ActorLocalizationHead.select_actors` keeps a data-dependent number of
queries by indexing. An exported graph has fixed output shapes instead: it
marks the same queries in a (B, Q) mask, built only from tensor operations
that ONNX has (TopK, comparisons, logical ops, ScatterElements) and with no
Python branch on tensor values, so one trace holds for every input.
"""
from typing import Optional

import torch
from torch import Tensor

# keys of mmcv's ``nms`` that ``nms_mask`` implements, besides ``type``;
# ``class_agnostic`` and ``split_thr`` change nothing for one class
NMS_KEYS = ('iou_threshold', 'offset', 'score_threshold', 'max_num',
            'class_agnostic', 'split_thr')


def top_k_mask(scores: Tensor, k: int) -> Tensor:
    """(B, Q) mask of the ``k`` highest scores of each row."""
    index = scores.topk(k, dim=1).indices
    return torch.zeros_like(scores, dtype=torch.bool).scatter(
        1, index, torch.ones_like(index, dtype=torch.bool))


def check_nms_cfg(nms_cfg: dict) -> dict:
    """``test_cfg.nms`` with defaults filled in, or a ValueError for what
    :func:`nms_mask` cannot reproduce."""
    nms_cfg = dict(nms_cfg)
    nms_type = nms_cfg.pop('type', 'nms')
    if nms_type != 'nms':
        raise ValueError(
            f'test_cfg.nms type={nms_type!r}: the exported actor rule '
            "implements mmcv's 'nms' only; use dict(type='nms', "
            'iou_threshold=...) or export without nms.')
    unknown = set(nms_cfg) - set(NMS_KEYS)
    if unknown:
        raise ValueError(
            f'test_cfg.nms has keys {sorted(unknown)} that the exported '
            f'actor rule does not implement (known: {NMS_KEYS}).')
    if 'iou_threshold' not in nms_cfg:
        raise ValueError('test_cfg.nms needs an iou_threshold.')
    return dict(
        iou_threshold=float(nms_cfg['iou_threshold']),
        offset=int(nms_cfg.get('offset', 0)),
        score_threshold=float(nms_cfg.get('score_threshold', 0)),
        max_num=int(nms_cfg.get('max_num', -1)))


def nms_mask(boxes: Tensor, scores: Tensor, mask: Tensor,
             iou_threshold: float, offset: int = 0,
             score_threshold: float = 0., max_num: int = -1) -> Tensor:
    """mmcv's greedy ``nms`` over the queries of ``mask``, as a mask.

    In descending score order, each surviving box removes the later ones
    whose IoU with it exceeds ``iou_threshold`` (areas with ``offset``
    added to widths and heights, as mmcv computes them). The greedy loop is
    unrolled over the Q sorted positions, so Q - 1 small steps are traced.

    Args:
        boxes (Tensor): (B, Q, 4) xyxy.
        scores (Tensor): (B, Q).
        mask (Tensor): (B, Q) bool, the queries taking part.
        iou_threshold (float): Suppress above this IoU.
        offset (int): 0 or 1, added to widths and heights.
        score_threshold (float): Only scores above it take part, if > 0.
        max_num (int): Keep at most this many (the best), if > 0.

    Returns:
        Tensor: (B, Q) bool, the queries NMS keeps.
    """
    num = scores.shape[1]
    order = scores.argsort(dim=1, descending=True)
    alive = mask.gather(1, order)
    if score_threshold > 0:
        alive = alive & (scores.gather(1, order) > score_threshold)
    x1, y1, x2, y2 = boxes.gather(1, order[..., None].expand(-1, -1, 4)) \
        .unbind(-1)
    area = (x2 - x1 + offset) * (y2 - y1 + offset)
    width = (torch.min(x2[:, :, None], x2[:, None]) -
             torch.max(x1[:, :, None], x1[:, None]) + offset).clamp(min=0)
    height = (torch.min(y2[:, :, None], y2[:, None]) -
              torch.max(y1[:, :, None], y1[:, None]) + offset).clamp(min=0)
    inter = width * height
    iou = inter / (area[:, :, None] + area[:, None] - inter)
    later = torch.ones(num, num, dtype=torch.bool,
                       device=scores.device).triu(1)
    suppresses = (iou > iou_threshold) & later  # (B, Q, Q): [i, j], i first
    for i in range(num - 1):
        alive = alive & ~(alive[:, i:i + 1] & suppresses[:, i])
    if max_num > 0:
        alive = alive & (alive.long().cumsum(1) <= max_num)
    return torch.zeros_like(alive).scatter(1, order, alive)


def actor_mask(boxes: Tensor, scores: Tensor, test_cfg: Optional[dict]
               ) -> Tensor:
    """The queries ``ActorLocalizationHead.select_actors`` keeps, per clip.

    * ``num_actors=K``: the K highest scores.
    * Otherwise the ``max_per_img`` highest (all without it) are the
      candidates; those reaching ``score_thr`` (0.7 by default) are kept,
      all candidates when none does; then ``nms`` if given.

    Args:
        boxes (Tensor): (B, Q, 4) pixel xyxy of every query.
        scores (Tensor): (B, Q) person scores.
        test_cfg (dict, optional): ``roi_head.test_cfg``.

    Returns:
        Tensor: (B, Q) bool.
    """
    test_cfg = dict(test_cfg or {})
    num = scores.shape[1]
    num_actors = test_cfg.get('num_actors')
    if num_actors is not None:
        if num_actors > num:
            raise ValueError(
                f'test_cfg.num_actors={num_actors} exceeds the {num} queries '
                '(rpn_head.num_proposals).')
        return top_k_mask(scores, num_actors)
    candidates = torch.ones_like(scores, dtype=torch.bool)
    max_per_img = test_cfg.get('max_per_img')
    if max_per_img is not None and max_per_img < num:
        candidates = top_k_mask(scores, max_per_img)
    passed = candidates & (scores >= float(test_cfg.get('score_thr', 0.7)))
    # all candidates where none passes (logical ops: onnxruntime's CPU
    # Where has no boolean kernel)
    mask = passed | (candidates & ~passed.any(1, keepdim=True))
    if test_cfg.get('nms') is not None:
        mask = nms_mask(boxes, scores, mask,
                        **check_nms_cfg(test_cfg['nms']))
    return mask
