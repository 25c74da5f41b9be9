"""Tokens from a small 3-D CNN: the "hybrid" patch embedding of ViT."""
from typing import Tuple

from mmengine.model import BaseModule
from torch import Tensor, nn

from evad_mm.registry import MODELS
from evad_mm.utils.typing_utils import ConfigType, OptMultiConfig


@MODELS.register_module()
class HybridPatchEmbed(BaseModule):
    """Patch embedding by a convolutional stem (Dosovitskiy et al., ViT
    "hybrid"): a 3-D CNN maps the clip to one feature map at the patch
    stride, and a ``(tubelet_size, 1, 1)`` convolution with the same stride
    turns it into tokens.

    A linear patch embedding learns little locality from a few thousand
    frames; a convolutional stem gives a ViT trained from scratch that
    prior (e.g. the toy config). Use it in place of the linear one with
    ``EVADViT(patch_embed_cfg=dict(type='HybridPatchEmbed', cnn=...))``;
    VideoMAE checkpoints then no longer fit ``patch_embed``.

    Args:
        cnn (dict): A backbone giving one (B, cnn_channels, T, H/s, W/s)
            map, s = the ViT's patch size, T = the input frames (e.g.
            mmaction2's ``ResNet3dSlowOnly`` with no temporal striding and
            one ``out_indices``).
        cnn_channels (int): Channels of that map.
        embed_dims (int): Token width (set by ``EVADViT``).
        tubelet_size (int): Frames per token (set by ``EVADViT``).
        init_cfg (dict, optional): Defaults to None.
    """

    def __init__(self,
                 cnn: ConfigType,
                 cnn_channels: int,
                 embed_dims: int,
                 tubelet_size: int = 2,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.cnn = MODELS.build(cnn)
        self.proj = nn.Conv3d(
            cnn_channels,
            embed_dims,
            kernel_size=(tubelet_size, 1, 1),
            stride=(tubelet_size, 1, 1))

    def forward(self, x: Tensor) -> Tuple[Tensor, Tuple[int, int, int]]:
        """(B, C, T, H, W) clip -> tokens (B, t*h*w, embed_dims), (t, h, w).
        """
        feat = self.cnn(x)
        if isinstance(feat, (tuple, list)):
            if len(feat) != 1:
                raise ValueError(
                    f'HybridPatchEmbed needs one feature map from its cnn, '
                    f'got {len(feat)}; give the cnn a single out index.')
            feat = feat[0]
        feat = self.proj(feat)
        return feat.flatten(2).transpose(1, 2), tuple(feat.shape[2:])
