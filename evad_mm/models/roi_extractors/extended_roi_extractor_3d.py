"""3-D RoIAlign over extended boxes (EVAD's context refinement input)."""
from typing import Optional, Sequence, Tuple, Union

import torch
from mmaction.models.roi_heads.roi_extractors import SingleRoIExtractor3D
from torch import Tensor

from evad_mm.registry import MMDET_MODELS, MODELS
from .float32_roi_extraction import extract_in_float32


def extend_rois(rois: Tensor,
                extend_ratio: Sequence[float],
                img_shapes: Optional[Sequence[Sequence[int]]] = None,
                feat_hw: Optional[Sequence[int]] = None,
                stride: float = 16.) -> Tensor:
    """Widen boxes by ``x * w / 2`` left and right and ``y * h / 2`` up and down.

    With ``w = x2 - x1 + 1`` and ``h = y2 - y1 + 1`` in pixels, then clip to
    ``[0, W - 1] x [0, H - 1]`` of each sample's image (``img_shapes``) or,
    without them, of the feature map extent ``feat_hw * stride``.

    Args:
        rois (Tensor): (K, 5) ``(batch_idx, x1, y1, x2, y2)`` in pixels.
        extend_ratio (Sequence[float]): (x, y) >= 0.
        img_shapes (Sequence[Sequence[int]], optional): (H, W) per sample.
        feat_hw (Sequence[int], optional): (h, w) of the feature map.
        stride (float): Feature stride. Defaults to 16.

    Returns:
        Tensor: (K, 5) extended and clipped RoIs.
    """
    rx, ry = extend_ratio
    boxes = rois[:, 1:]
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    dx, dy = rx * w / 2, ry * h / 2
    boxes = torch.stack([
        boxes[:, 0] - dx, boxes[:, 1] - dy, boxes[:, 2] + dx, boxes[:, 3] + dy
    ], dim=1)
    if img_shapes is not None:
        limits = rois.new_tensor([[s[1] - 1, s[0] - 1] for s in img_shapes])
        limits = limits[rois[:, 0].long()]
    elif feat_hw is not None:
        limits = rois.new_tensor([feat_hw[1] * stride - 1,
                                  feat_hw[0] * stride - 1]).expand(
                                      len(rois), 2)
    else:
        limits = None
    boxes = boxes.clamp(min=0)
    if limits is not None:
        boxes = torch.min(boxes, limits.repeat(1, 2))
    return torch.cat([rois[:, :1], boxes], dim=1)


@MODELS.register_module()
@MMDET_MODELS.register_module()
class ExtendedRoIExtractor3D(SingleRoIExtractor3D):
    """mmaction2's ``SingleRoIExtractor3D`` with extended boxes and pooling.

    Same ``forward(feat, rois)`` contract, so stock mmaction2 AVA configs can
    swap it in. Boxes are first extended (see :func:`extend_rois`), then
    RoIAlign runs on every time slice, then the RoI features are pooled
    spatially and temporally as configured. EVAD: 7x7 RoIAlign (sampling 2,
    aligned), spatial max, temporal mean, extension (0.4, 0.2). Under mixed
    precision it runs in float32 (see :func:`extract_in_float32`).

    Args:
        extend_ratio (Sequence[float]): (x, y) box extension.
            Defaults to (0.4, 0.2).
        roi_spatial_pool (str, optional): 'max', 'avg' or None over the
            RoIAlign grid. Defaults to 'max'.
        roi_temporal_pool (str, optional): 'avg', 'max' or None over time,
            after RoIAlign. Defaults to 'avg'.
        featmap_stride (int): Defaults to 16.
        output_size (int): RoIAlign size. Defaults to 7.
        sampling_ratio (int): Defaults to 2.
        with_temporal_pool (bool): mmaction2's pooling of the feature map over
            time *before* RoIAlign. Defaults to False.
        **kwargs: Other ``SingleRoIExtractor3D`` arguments.
    """

    _POOLS = {'max': torch.amax, 'avg': torch.mean, None: None}

    def __init__(self,
                 extend_ratio: Sequence[float] = (0.4, 0.2),
                 roi_spatial_pool: Optional[str] = 'max',
                 roi_temporal_pool: Optional[str] = 'avg',
                 featmap_stride: int = 16,
                 output_size: int = 7,
                 sampling_ratio: int = 2,
                 with_temporal_pool: bool = False,
                 **kwargs) -> None:
        super().__init__(
            featmap_stride=featmap_stride,
            output_size=output_size,
            sampling_ratio=sampling_ratio,
            with_temporal_pool=with_temporal_pool,
            **kwargs)
        if len(extend_ratio) != 2 or min(extend_ratio) < 0:
            raise ValueError(f'extend_ratio={extend_ratio} must be two '
                             'non-negative numbers (x, y).')
        for name, mode in (('roi_spatial_pool', roi_spatial_pool),
                           ('roi_temporal_pool', roi_temporal_pool)):
            if mode not in self._POOLS:
                raise ValueError(f"{name}={mode!r}: choose 'max', 'avg' or "
                                 'None.')
        self.extend_ratio = tuple(float(r) for r in extend_ratio)
        self.roi_spatial_pool = roi_spatial_pool
        self.roi_temporal_pool = roi_temporal_pool

    def forward(
        self,
        feat: Union[Tensor, Tuple[Tensor, ...]],
        rois: Tensor,
        img_shapes: Optional[Sequence[Sequence[int]]] = None
    ) -> Tuple[Tensor, Tensor]:
        """Extract one feature per RoI.

        Args:
            feat (Tensor | tuple[Tensor]): (B, C, T, H, W) map(s).
            rois (Tensor): (K, 5) ``(batch_idx, x1, y1, x2, y2)`` in input
                pixels.
            img_shapes (Sequence, optional): (H, W) of each sample's unpadded
                image, used to clip the extended boxes.

        Returns:
            tuple: RoI features (K, C, T', S, S), where pooled dimensions
            have size 1, and the (temporally pooled) feature map as
            ``SingleRoIExtractor3D`` returns it; computed in float32 for
            float16 / bfloat16 maps (see :func:`extract_in_float32`) and
            returned in their dtype.
        """
        return extract_in_float32(self._extract, feat, rois, img_shapes)

    def _extract(
        self,
        feat: Union[Tensor, Tuple[Tensor, ...]],
        rois: Tensor,
        img_shapes: Optional[Sequence[Sequence[int]]] = None
    ) -> Tuple[Tensor, Tensor]:
        """:meth:`forward` in the dtype of ``feat``."""
        first = feat[0] if isinstance(feat, tuple) else feat
        if any(self.extend_ratio):
            rois = extend_rois(rois, self.extend_ratio, img_shapes,
                               first.shape[-2:], self.featmap_stride)
        roi_feats, feat = super().forward(feat, rois)
        spatial = self._POOLS[self.roi_spatial_pool]
        if spatial is not None:
            roi_feats = spatial(roi_feats, dim=(3, 4), keepdim=True)
        temporal = self._POOLS[self.roi_temporal_pool]
        if temporal is not None:
            roi_feats = temporal(roi_feats, dim=2, keepdim=True)
        return roi_feats, feat
