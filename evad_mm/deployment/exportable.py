"""Export-time swaps that make a built EVAD traceable to standard ONNX ops.

Two parts of the OpenMMLab stack do not trace to a graph that holds for
every input:

* mmcv's ``RoIAlign`` runs a compiled kernel that the tracer cannot look
  into. Its ``use_torchvision`` switch runs ``torchvision.ops.roi_align``
  instead, which computes the same average RoIAlign (``aligned=True``:
  ``half_pixel``) and has an ONNX symbolic emitting ONNX's own ``RoiAlign``.
* mmdet 3's ``SingleRoIExtractor`` gathers the RoIs of each pyramid level
  by ``nonzero`` and skips levels without RoIs in Python: a trace would
  keep only the levels the example input used. During export each level
  pools every RoI and ``where`` picks each RoI's level: the same features,
  with no branch on tensor values.

:func:`onnx_exportable` applies both to a model for the duration of a
``with`` block and restores it afterwards; nothing in the model code
changes.
"""
import types
from contextlib import contextmanager
from typing import Iterator, List, Optional, Tuple

import torch
import torchvision.ops  # noqa: F401  (imported here: not during tracing)
from mmcv.ops import RoIAlign
from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
from torch import Tensor, nn


def _all_levels_forward(self: SingleRoIExtractor,
                        feats: Tuple[Tensor],
                        rois: Tensor,
                        roi_scale_factor: Optional[float] = None) -> Tensor:
    """``SingleRoIExtractor.forward`` without data-dependent branches: every
    level pools every RoI and each RoI keeps its own level's features."""
    rois = rois.type_as(feats[0])
    num_levels = len(feats)
    if num_levels == 1:
        return self.roi_layers[0](feats[0], rois)
    levels = self.map_roi_levels(rois, num_levels)[:, None, None, None]
    if roi_scale_factor is not None:
        rois = self.roi_rescale(rois, roi_scale_factor)
    roi_feats = self.roi_layers[0](feats[0], rois)
    for i in range(1, num_levels):
        roi_feats = torch.where(levels == i,
                                self.roi_layers[i](feats[i], rois), roi_feats)
    return roi_feats


@contextmanager
def onnx_exportable(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, ``model`` traces to standard ONNX ops.

    Args:
        model (nn.Module): A built EVAD (or any model with mmcv
            ``RoIAlign`` and mmdet ``SingleRoIExtractor`` modules).

    Yields:
        nn.Module: ``model`` itself, swapped in place.

    Raises:
        ValueError: A ``RoIAlign`` max-pools its bins (torchvision and ONNX's
            ``RoiAlign`` as exported here average them).
    """
    roi_aligns: List[Tuple[RoIAlign, bool]] = []
    extractors: List[SingleRoIExtractor] = []
    for name, module in model.named_modules():
        if isinstance(module, RoIAlign):
            if module.pool_mode != 'avg':
                raise ValueError(
                    f'{name}: RoIAlign(pool_mode={module.pool_mode!r}) cannot '
                    'be exported; only average pooling (the default) is.')
            roi_aligns.append((module, module.use_torchvision))
        elif isinstance(module, SingleRoIExtractor):
            extractors.append(module)
    try:
        for module, _ in roi_aligns:
            module.use_torchvision = True
        for module in extractors:
            module.forward = types.MethodType(_all_levels_forward, module)
        yield model
    finally:
        for module, use_torchvision in roi_aligns:
            module.use_torchvision = use_torchvision
        for module in extractors:
            del module.forward
