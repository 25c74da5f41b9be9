"""EVAD's ViT encoder with keyframe-centric token pruning."""
from contextlib import contextmanager
from typing import (Any, Callable, Iterator, List, NamedTuple, Optional,
                    Sequence, Tuple, Union)

import torch
import torch.nn.functional as F
from mmaction.models.backbones.vit_mae import VisionTransformer
from mmengine.model import ModuleList
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from evad_mm.registry import MODELS
from evad_mm.utils.checkpoint import load_checkpoint
from evad_mm.utils.typing_utils import (ConfigType, OptConfigType,
                                        OptMultiConfig)
from ..layers.token_pruning import (PRUNING_STRATEGIES, gather_kept_tokens,
                                    keyframe_first_order,
                                    keyframe_query_weights,
                                    keyframe_slice_tokens, per_layer,
                                    random_non_keyframe_tokens,
                                    select_non_keyframe_tokens,
                                    select_tokens_unified)
from ..layers.transformer import TransformerBlock, resize_position_table


DEFAULT_INIT = [
    dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),
    dict(type='Constant', layer='LayerNorm', val=1., bias=0.)
]


class EVADBackboneOutput(NamedTuple):
    """What :class:`EVADViT` returns.

    Attributes:
        keyframe_feats (tuple[Tensor]): (B, C, h, w) keyframe tokens after each
            ``out_indices`` block, before the final norm.
        tokens (Tensor): (B, M, C) tokens after the final norm: the h*w
            keyframe tokens first (raster order), then the kept non-keyframe
            tokens. With ``pruning='unified'`` only the keyframe tokens that
            survived come first (their number varies per sample), so
            ``token_index`` alone says which token is where.
        token_index (Tensor): (B, M) int64 position of each token in the
            flattened (t, h, w) grid (t-major).
        grid (tuple[int]): (t, h, w).
    """
    keyframe_feats: Tuple[Tensor, ...]
    tokens: Tensor
    token_index: Tensor
    grid: Tuple[int, int, int]


def _check_block_indices(indices: Sequence[int], depth: int,
                         name: str) -> Tuple[int, ...]:
    indices = tuple(int(i) for i in indices)
    if any(i < 0 or i >= depth for i in indices):
        raise ValueError(f'{name}={indices}: every block index must lie in '
                         f'[0, depth={depth}).')
    if list(indices) != sorted(set(indices)):
        raise ValueError(f'{name}={indices}: block indices must be sorted '
                         'and not repeated.')
    return indices


@MODELS.register_module()
class EVADViT(VisionTransformer):
    """VideoMAE ViT with keyframe-centric token pruning (EVAD, ICCV 2023).

    A drop-in for mmaction2's :class:`VisionTransformer` state dict (same
    module names), so mmaction2's VideoMAE checkpoints load as they are.
    The keyframe is temporal slice ``t // 2`` (t = T / tubelet_size). In each
    block of ``prune_layers`` the attention map of all current tokens ranks
    the non-keyframe tokens (keyframe queries weighted by
    ``keyframe_weight``); ``ceil(keep_rate * N)`` tokens survive, all
    keyframe tokens among them, before the block's MLP.

    The ranking (q k^T, softmax, scores, top-k) is computed in float32
    without gradient, also under autocast. In training the outputs of the
    pruning blocks come from fused attention, so no attention map is kept
    for the backward pass (see :class:`~evad_mm.models.layers.Attention`).
    The position table follows the tokens' dtype.

    Args:
        img_size (int): Frame size the position table was made for.
            Defaults to 224.
        patch_size (int): Spatial patch size. Defaults to 16.
        in_channels (int): Input channels. Defaults to 3.
        embed_dims (int): Token width. Defaults to 768.
        depth (int): Number of blocks. Defaults to 12.
        num_heads (int): Attention heads. Defaults to 12.
        mlp_ratio (float): MLP hidden width over ``embed_dims``. Defaults to 4.
        qkv_bias (bool): q and v biases. Defaults to True.
        drop_path_rate (float): Stochastic depth, linear from 0 to this.
            Defaults to 0.
        norm_cfg (dict): Norm config. Defaults to LN with eps 1e-6.
        num_frames (int): Input frames T. Defaults to 16.
        tubelet_size (int): Frames per token. Defaults to 2.
        prune_layers (Sequence[int]): 0-based blocks that prune.
            Defaults to (3, 6, 9).
        keep_rate (float | Sequence[float]): rho in (0, 1], one value or one
            per prune layer. Defaults to 0.7. Changeable after training.
        keyframe_weight (float): w_kf > 0. Defaults to 1.
        pruning (str): Which tokens a pruning block keeps, all with the
            same count ``ceil(keep_rate * N)``: 'keyframe' (EVAD) ranks the
            non-keyframe tokens by attention and keeps every keyframe
            token; 'random' keeps as many non-keyframe tokens chosen
            uniformly at random (torch's global generator, which mmengine
            seeds from ``randomness.seed``; no attention scores needed, so
            the block runs fused attention), in training and at test time;
            'unified' ranks all tokens alike, so keyframe tokens may be
            dropped: the keyframe maps for localization then hold zeros at
            their positions. The last two (ablations of EVAD's Table 1b/1c)
            need ``keyframe_weight=1``. Defaults to 'keyframe'.
        out_indices (Sequence[int]): Blocks whose keyframe tokens are
            returned for localization. Defaults to (2, 5, 8, 11).
        with_cp (bool): Activation checkpointing of every block (both
            halves of a pruning block), for large models such as ViT-L:
            the same gradients for less memory and another forward pass.
            Defaults to False.
        fused_attn (bool): Fused attention where no scores are needed.
            Defaults to True.
        patch_embed_cfg (dict, optional): Another patch embedding, built
            with ``embed_dims`` and ``tubelet_size`` filled in, e.g.
            :class:`HybridPatchEmbed` (a convolutional stem for training
            from scratch); it must give the same (t, h, w) token grid as
            the linear one. Defaults to None: mmaction2's linear
            ``PatchEmbed``.
        use_mean_pooling (bool): For recognition (e.g. in mmaction2's
            ``Recognizer3D``): return ``fc_norm`` of the mean of the kept
            tokens, (B, C), instead of :class:`EVADBackboneOutput`; the
            keyframe is then simply the middle slice. Defaults to False.
        init_cfg (dict | list[dict], optional): Defaults to truncated-normal
            Linear and unit LayerNorm init, as mmaction2's ViT.
    """

    def __init__(self,
                 img_size: int = 224,
                 patch_size: int = 16,
                 in_channels: int = 3,
                 embed_dims: int = 768,
                 depth: int = 12,
                 num_heads: int = 12,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 drop_path_rate: float = 0.,
                 norm_cfg: ConfigType = dict(type='LN', eps=1e-6),
                 num_frames: int = 16,
                 tubelet_size: int = 2,
                 prune_layers: Sequence[int] = (3, 6, 9),
                 keep_rate: Union[float, Sequence[float]] = 0.7,
                 keyframe_weight: float = 1.0,
                 pruning: str = 'keyframe',
                 out_indices: Sequence[int] = (2, 5, 8, 11),
                 with_cp: bool = False,
                 fused_attn: bool = True,
                 patch_embed_cfg: OptConfigType = None,
                 use_mean_pooling: bool = False,
                 init_cfg: OptMultiConfig = None) -> None:
        if tubelet_size < 1 or num_frames % tubelet_size != 0:
            raise ValueError(
                f'num_frames ({num_frames}) must be a multiple of '
                f'tubelet_size ({tubelet_size}).')
        if keyframe_weight <= 0:
            raise ValueError(
                f'keyframe_weight must be > 0, got {keyframe_weight}.')
        if pruning not in PRUNING_STRATEGIES:
            raise ValueError(f'pruning={pruning!r}: choose one of '
                             f'{PRUNING_STRATEGIES}.')
        if pruning != 'keyframe' and keyframe_weight != 1:
            raise ValueError(
                f'keyframe_weight={keyframe_weight} weights the keyframe '
                f"queries of the ranking, which pruning={pruning!r} does "
                "not have ('random' ranks nothing, 'unified' treats "
                "keyframe tokens as any other): set keyframe_weight=1, or "
                "use pruning='keyframe'.")
        if init_cfg is None:
            init_cfg = DEFAULT_INIT
        super().__init__(
            img_size=img_size,
            patch_size=patch_size,
            in_channels=in_channels,
            embed_dims=embed_dims,
            depth=0,
            num_heads=num_heads,
            norm_cfg=norm_cfg,
            num_frames=num_frames,
            tubelet_size=tubelet_size,
            use_mean_pooling=use_mean_pooling,
            init_cfg=init_cfg)
        if patch_embed_cfg is not None:
            self.patch_embed = MODELS.build(
                dict(
                    patch_embed_cfg,
                    embed_dims=embed_dims,
                    tubelet_size=tubelet_size))
        self.depth = depth
        self.num_frames = num_frames
        self.tubelet_size = tubelet_size
        self.in_channels = in_channels
        self.prune_layers = _check_block_indices(prune_layers, depth,
                                                 'prune_layers')
        self.out_indices = _check_block_indices(out_indices, depth,
                                                'out_indices')
        self.keep_rate = keep_rate
        self.keyframe_weight = float(keyframe_weight)
        self.pruning = pruning
        self._kept_token_records: Optional[list] = None
        self.with_cp = with_cp
        rates = [x.item() for x in torch.linspace(0, drop_path_rate, depth)]
        self.blocks = ModuleList([
            TransformerBlock(
                embed_dims,
                num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                drop_path_rate=rates[i],
                norm_cfg=norm_cfg,
                fused_attn=fused_attn) for i in range(depth)
        ])

    def init_weights(self) -> None:
        """Default init, then a ``Pretrained`` ``init_cfg`` if any.

        Pretrained weights are read with ``weights_only=True``; keys that do
        not load are listed, and anything missing except the final ``norm``
        (absent from recognisers, which have ``fc_norm``) and the computed
        ``pos_embed`` is an error.
        """
        pretrained = self.init_cfg
        if not (isinstance(pretrained, dict)
                and pretrained.get('type') == 'Pretrained'):
            return super().init_weights()
        self.init_cfg = DEFAULT_INIT
        try:
            super().init_weights()
        finally:
            self.init_cfg = pretrained
        load_checkpoint(
            self,
            pretrained['checkpoint'],
            map_location=pretrained.get('map_location', 'cpu'),
            prefix=pretrained.get('prefix'),
            may_miss=('norm.', 'fc_norm.', 'pos_embed'))

    @property
    def keep_rate(self) -> Tuple[float, ...]:
        """One keep rate per prune layer."""
        return self._keep_rates

    @keep_rate.setter
    def keep_rate(self, value: Union[float, Sequence[float]]) -> None:
        rates = per_layer(value, len(self.prune_layers), 'keep_rate')
        if any(not 0 < r <= 1 for r in rates):
            raise ValueError(
                f'keep_rate={value}: every rate must lie in (0, 1].')
        self._keep_rates = rates

    def set_fused_attn(self, fused: bool) -> None:
        """Switch all blocks between fused and eager attention."""
        for block in self.blocks:
            block.attn.fused_attn = fused

    @contextmanager
    def record_kept_tokens(self) -> Iterator[List[Tuple[Tensor, ...]]]:
        """Record which tokens the pruning blocks keep.

        Every forward pass inside the context appends one tuple to the list
        it yields: for each block of ``prune_layers`` in order (also at keep
        rate 1), the (B, M_l) ``token_index`` of the tokens after it. The
        last one is the output's ``token_index``.

        Example::

            with model.backbone.record_kept_tokens() as kept:
                model.test_step(data)
            kept[0][1]  # (B, M) grid positions kept by the second layer
        """
        records: List[Tuple[Tensor, ...]] = []
        previous, self._kept_token_records = self._kept_token_records, records
        try:
            yield records
        finally:
            self._kept_token_records = previous

    def _embed(self, x: Tensor) -> Tuple[Tensor, Tuple[int, int, int]]:
        """(B, C, T, H, W) -> tokens (B, t*h*w, C) with positions, grid."""
        if x.dim() != 5:
            raise ValueError(f'EVADViT expects (B, C, T, H, W) clips, got a '
                             f'tensor of shape {tuple(x.shape)}.')
        B, C, T, H, W = x.shape
        if C != self.in_channels:
            raise ValueError(f'EVADViT was built for {self.in_channels} '
                             f'input channels, got {C} (shape '
                             f'{tuple(x.shape)}); check FormatShape.')
        if T != self.num_frames:
            raise ValueError(
                f'EVADViT was built for num_frames={self.num_frames} '
                f'({self.num_frames // self.tubelet_size} tubelets), got a '
                f'clip of {T} frames; set clip_len in SampleAVAFrames or '
                f'num_frames in the backbone config to match.')
        if H < self.patch_size or W < self.patch_size:
            raise ValueError(f'clip of {H}x{W} pixels is smaller than one '
                             f'{self.patch_size}x{self.patch_size} patch.')
        pad_h, pad_w = -H % self.patch_size, -W % self.patch_size
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        h, w = (H + pad_h) // self.patch_size, (W + pad_w) // self.patch_size
        x = self.patch_embed(x)[0]
        if x.shape[1] != T // self.tubelet_size * h * w:
            raise ValueError(
                f'the patch embedding gave {x.shape[1]} tokens for a '
                f'{T}x{H + pad_h}x{W + pad_w} clip, expected '
                f'{T // self.tubelet_size}x{h}x{w}: its stride must be '
                f'(tubelet_size={self.tubelet_size}, patch_size='
                f'{self.patch_size}, patch_size); check patch_embed_cfg.')
        pos_embed = resize_position_table(self.pos_embed, self.grid_size,
                                          (h, w))
        return x + pos_embed.to(x.dtype), (T // self.tubelet_size, h, w)

    def _checkpointed(self, fn: Callable, x: Tensor, *args) -> Any:
        """``fn(x, *args)``, under activation checkpointing with ``with_cp``
        when ``x`` needs a gradient."""
        if self.with_cp and x.requires_grad:
            return checkpoint(fn, x, *args, use_reentrant=False)
        return fn(x, *args)

    def forward(self, x: Tensor) -> Union[EVADBackboneOutput, Tensor]:
        """Encode a clip.

        Args:
            x (Tensor): (B, C, T, H, W); H and W need not be multiples of the
                patch size (zero padding bottom/right).

        Returns:
            EVADBackboneOutput: see its docstring; with ``use_mean_pooling``
            the pooled (B, C) feature.
        """
        x, grid = self._embed(x)
        t, h, w = grid
        num_key = h * w
        order = keyframe_first_order(grid, t // 2, device=x.device)
        x = x[:, order]
        token_index = order.unsqueeze(0).expand(x.shape[0], -1)
        keyframe_feats: List[Tensor] = []
        kept_per_layer: List[Tensor] = []
        rates = dict(zip(self.prune_layers, self.keep_rate))
        for i, block in enumerate(self.blocks):
            if rates.get(i, 1.0) < 1.0:
                x, token_index = self._prune_block(block, x, token_index,
                                                   num_key, rates[i])
            else:
                x = self._checkpointed(block, x)
            if i in rates:
                kept_per_layer.append(token_index)
            if i in self.out_indices:
                key = x[:, :num_key]
                if self.pruning == 'unified' and x.shape[1] < t * h * w:
                    key = keyframe_slice_tokens(x, token_index, grid, t // 2)
                # contiguous NCHW: mmcv's RoIAlign reads raw memory and
                # silently mixes channels up on other layouts
                keyframe_feats.append(key.transpose(1, 2).reshape(
                    x.shape[0], -1, h, w).contiguous())
        if self._kept_token_records is not None:
            self._kept_token_records.append(tuple(kept_per_layer))
        if self.fc_norm is not None:
            return self.fc_norm(x.mean(1))
        return EVADBackboneOutput(
            tuple(keyframe_feats), self.norm(x), token_index, grid)

    def _prune_block(self, block: TransformerBlock, x: Tensor,
                     token_index: Tensor, num_key: int,
                     keep_rate: float) -> Tuple[Tensor, Tensor]:
        """Attention on all N tokens, keep ceil(rho*N) as ``pruning``
        chooses, then the MLP."""
        if self.pruning == 'random':
            x = self._checkpointed(block.attention_residual, x)[0]
            keep = random_non_keyframe_tokens(x.shape[0], x.shape[1],
                                              num_key, keep_rate, x.device)
        else:
            if self.pruning == 'unified':
                num_key = 0  # no token protected, no query weighted
            weights = keyframe_query_weights(x.shape[1], num_key,
                                             self.keyframe_weight, x.device)
            x, scores = self._checkpointed(block.attention_residual, x, None,
                                           weights)
            keep = select_non_keyframe_tokens(scores, num_key, keep_rate) \
                if self.pruning == 'keyframe' else \
                select_tokens_unified(scores, keep_rate)
        if keep is not None:
            x, token_index = gather_kept_tokens((x, token_index), keep,
                                                num_key)
        return self._checkpointed(block.mlp_residual, x), token_index
