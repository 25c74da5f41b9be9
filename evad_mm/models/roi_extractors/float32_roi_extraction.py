"""RoI feature extraction in float32 under mixed precision.

mmcv 2.1's ``RoIAlign`` kernels (CPU and CUDA) dispatch float32, float64 and
float16 only, and read the RoIs in the dtype of the features; mmdet's
``SingleRoIExtractor`` casts the RoIs to that dtype first. Under bfloat16
autocast RoIAlign therefore fails (``"ROIAlign_forward" not implemented for
'BFloat16'``), and in float16 or bfloat16 the box coordinates would be
rounded (bfloat16 keeps 8 bits: steps of 2 pixels between 256 and 512).
EVAD's RoI extractors run in float32, autocast off, whenever their feature
maps are float16 or bfloat16, and return their outputs in the maps' dtype.
RoIAlign is a small part of the model's time.
"""
from typing import Any, Callable, Optional, Sequence, Tuple, Union

import torch
from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
from torch import Tensor

from evad_mm.registry import MMDET_MODELS, MODELS

REDUCED_PRECISION = (torch.float16, torch.bfloat16)

Maps = Union[Tensor, Sequence[Tensor]]


def _cast(out: Any, dtype: torch.dtype) -> Any:
    """Cast a tensor, or each tensor of a tuple / list, to ``dtype``."""
    if isinstance(out, Tensor):
        return out.to(dtype) if out.is_floating_point() else out
    if isinstance(out, (tuple, list)):
        return type(out)(_cast(o, dtype) for o in out)
    return out


def extract_in_float32(extract: Callable[..., Any], feats: Maps, rois: Tensor,
                       *args, **kwargs) -> Any:
    """``extract(feats, rois, *args, **kwargs)``, in float32 if needed.

    When the maps are float16 or bfloat16, they and the RoIs are cast to
    float32 and ``extract`` runs with autocast off; floating-point outputs
    are cast back to the maps' dtype (gradients flow through both casts).
    Otherwise ``extract`` runs unchanged.

    Args:
        extract (Callable): An RoI extractor's forward.
        feats (Tensor | Sequence[Tensor]): Feature map(s), e.g. (B, C, H, W)
            per level or (B, C, T, H, W).
        rois (Tensor): (K, 5) ``(batch_idx, x1, y1, x2, y2)``.

    Returns:
        What ``extract`` returns.
    """
    first = feats if isinstance(feats, Tensor) else feats[0]
    dtype = first.dtype
    if dtype not in REDUCED_PRECISION:
        return extract(feats, rois, *args, **kwargs)
    with torch.autocast(first.device.type, enabled=False):
        out = extract(_cast(feats, torch.float32), rois.float(), *args,
                      **kwargs)
    return _cast(out, dtype)


@MODELS.register_module()
@MMDET_MODELS.register_module()
class Float32SingleRoIExtractor(SingleRoIExtractor):
    """mmdet's ``SingleRoIExtractor``, computed in float32 under mixed
    precision (see :func:`extract_in_float32`); the same in float32.

    Arguments are those of ``SingleRoIExtractor``.
    """

    def forward(self,
                feats: Tuple[Tensor],
                rois: Tensor,
                roi_scale_factor: Optional[float] = None) -> Tensor:
        """(K, C, S, S) features of (K, 5) RoIs from the FPN maps."""
        return extract_in_float32(super().forward, feats, rois,
                                  roi_scale_factor)
