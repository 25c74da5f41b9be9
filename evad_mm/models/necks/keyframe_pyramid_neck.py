"""Multi-scale keyframe maps from a plain ViT, fed to an FPN."""
from typing import Sequence, Tuple, Union

import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor

from evad_mm.registry import MODELS
from evad_mm.utils.typing_utils import ConfigType, OptMultiConfig


@MODELS.register_module()
class KeyframePyramidNeck(BaseModule):
    """Resample single-stride keyframe maps to a pyramid, then run an FPN.

    EVAD takes the keyframe tokens of four encoder blocks (stride 16),
    resamples them with nearest interpolation by ``scale_factors`` (x4, x2,
    x1, x0.5: strides 4, 8, 16, 32) and feeds mmdet's ``FPN``.

    Args:
        in_channels (int | Sequence[int]): Channels of every input map, or
            one per map (e.g. a 3-D CNN's stages). Defaults to 768.
        out_channels (int): FPN channels. Defaults to 256.
        scale_factors (Sequence[float]): One factor per input map.
            Defaults to (4, 2, 1, 0.5).
        fpn (dict): Extra FPN arguments; ``in_channels``, ``out_channels``
            and ``num_outs`` are filled in. Defaults to mmdet's ``FPN``.
        init_cfg (dict, optional): Defaults to None.
    """

    def __init__(self,
                 in_channels: Union[int, Sequence[int]] = 768,
                 out_channels: int = 256,
                 scale_factors: Sequence[float] = (4, 2, 1, 0.5),
                 fpn: ConfigType = dict(type='FPN'),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if any(s <= 0 for s in scale_factors):
            raise ValueError(
                f'scale_factors={scale_factors} must all be positive.')
        self.scale_factors = tuple(float(s) for s in scale_factors)
        if isinstance(in_channels, int):
            in_channels = [in_channels] * len(self.scale_factors)
        if len(in_channels) != len(self.scale_factors):
            raise ValueError(
                f'in_channels={in_channels} and scale_factors='
                f'{scale_factors} must have the same length.')
        fpn = dict(fpn)
        fpn.setdefault('_scope_', 'mmdet')
        fpn.update(
            in_channels=list(in_channels),
            out_channels=out_channels,
            num_outs=len(self.scale_factors))
        self.fpn = MODELS.build(fpn)

    def forward(self, feats: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """Build the pyramid.

        Args:
            feats (Sequence[Tensor]): One (B, C, h, w) keyframe map per scale
                factor, or a single map resampled to every scale (ViTDet's
                simple feature pyramid).

        Returns:
            tuple[Tensor]: FPN outputs, (B, out_channels, h*s, w*s) each,
                contiguous.
        """
        if len(feats) == 1:
            feats = list(feats) * len(self.scale_factors)
        if len(feats) != len(self.scale_factors):
            raise ValueError(
                f'KeyframePyramidNeck got {len(feats)} maps but has '
                f'{len(self.scale_factors)} scale_factors; make the '
                'backbone out_indices and scale_factors the same length.')
        pyramid = [
            x if s == 1 else F.interpolate(x, scale_factor=s, mode='nearest')
            for x, s in zip(feats, self.scale_factors)
        ]
        # mmcv's RoIAlign (mmdet's RoI extractors) reads its input as
        # contiguous NCHW memory and silently returns wrong features for
        # channels-last or permuted maps, which a backbone's token reshape
        # easily yields
        return tuple(x.contiguous() for x in self.fpn(pyramid))
