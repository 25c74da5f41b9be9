"""EVAD's context refinement: 3-D RoI features refined by a token decoder."""
import logging
import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmaction.models.backbones.vit_mae import get_sinusoid_encoding
from mmdet.utils import reduce_mean
from mmengine.logging import print_log
from mmengine.model import BaseModule, ModuleList
from mmengine.model.weight_init import trunc_normal_
from torch import Tensor, nn

from evad_mm.registry import MMDET_MODELS, MODELS
from evad_mm.utils.typing_utils import ConfigType, OptMultiConfig
from ..layers.transformer import TransformerBlock, resize_position_table

TOKEN_ORDERS = ('position', 'reference')


@MODELS.register_module()
@MMDET_MODELS.register_module()
class ContextRefinementHead(BaseModule):
    """Classify actions of boxes from kept encoder tokens (EVAD, Sec. 3.3).

    1. Project tokens to ``embed_dims`` and rebuild the (t, h, w) map: every
       kept token at its own position, a learned ``mask_token`` at pruned
       positions, plus a sinusoid position table.
    2. One feature per box from ``roi_extractor`` (extended 3-D RoIAlign).
    3. A pre-norm transformer over [kept tokens ; box features]; after every
       block the box tokens are classified (Linear-LN-ReLU-Linear).

    Inputs are either :class:`EVADBackboneOutput` (pruned tokens) or a plain
    (B, C, t, h, w) map from any backbone (every position kept).

    Args:
        num_classes (int): Classes including mmaction2's unused column 0
            (81 for AVA); ``num_classes - 1`` logits are predicted.
            Defaults to 81.
        in_channels (int): Backbone token / map channels. Defaults to 768.
        embed_dims (int): Decoder width (384 for ViT-B, 512 for ViT-L).
        depth (int): Decoder blocks. Defaults to 6.
        num_heads (int): Decoder heads. Defaults to 6.
        mlp_ratio (float): Decoder MLP ratio. Defaults to 4.
        drop_path_rate (float): Linear stochastic depth up to this.
            Defaults to 0.1.
        hidden_channels (int): Classifier hidden width. Defaults to 2048.
        pos_grid (Sequence[int]): (t, h, w) the position table is made for.
            Defaults to (8, 14, 14).
        token_order (str): 'position' puts each kept token at its own
            position; 'reference' reproduces the authors' order (kept
            non-keyframe tokens written in ascending position order
            regardless of which token is which) for their rho < 1 weights.
        roi_extractor (dict): Defaults to ``ExtendedRoIExtractor3D``.
        actor_cells (int): RoI feature cells per box that ``roi_extractor``
            leaves unpooled, e.g. t time slices with
            ``roi_temporal_pool=None``. More than one are concatenated in
            order and linearly projected to ``embed_dims``: the box feature
            then keeps the order of time (which way a box moves), which a
            temporal mean loses. Defaults to 1 (EVAD: one pooled feature).
        loss_weight (float): Weight of the BCE of every block. Defaults to 12.
        fused_attn (bool): Fused attention in the decoder. Defaults to True.
        init_cfg (dict, optional): Defaults to None.
    """

    def __init__(self,
                 num_classes: int = 81,
                 in_channels: int = 768,
                 embed_dims: int = 384,
                 depth: int = 6,
                 num_heads: int = 6,
                 mlp_ratio: float = 4.,
                 drop_path_rate: float = 0.1,
                 hidden_channels: int = 2048,
                 pos_grid: Sequence[int] = (8, 14, 14),
                 token_order: str = 'position',
                 roi_extractor: ConfigType = dict(
                     type='ExtendedRoIExtractor3D'),
                 actor_cells: int = 1,
                 loss_weight: float = 12.,
                 fused_attn: bool = True,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if token_order not in TOKEN_ORDERS:
            raise ValueError(f'token_order={token_order!r}: choose one of '
                             f'{TOKEN_ORDERS}.')
        if num_classes < 2:
            raise ValueError(f'num_classes={num_classes} must count column 0 '
                             'too (81 for AVA).')
        self.num_classes = num_classes
        self.embed_dims = embed_dims
        self.token_order = token_order
        self.loss_weight = loss_weight
        self.pos_grid = tuple(pos_grid)
        self.encoder_to_decoder = nn.Linear(in_channels, embed_dims,
                                            bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
        self.register_buffer(
            'pos_embed',
            get_sinusoid_encoding(
                self.pos_grid[0] * self.pos_grid[1] * self.pos_grid[2],
                embed_dims),
            persistent=False)
        roi_extractor = dict(roi_extractor)
        self.roi_extractor = MODELS.build(roi_extractor)
        if actor_cells < 1:
            raise ValueError(f'actor_cells={actor_cells} must be >= 1.')
        self.actor_cells = actor_cells
        self.actor_proj = nn.Linear(
            embed_dims * actor_cells,
            embed_dims) if actor_cells > 1 else None
        rates = [x.item() for x in torch.linspace(0, drop_path_rate, depth)]
        self.blocks = ModuleList([
            TransformerBlock(
                embed_dims,
                num_heads,
                mlp_ratio=mlp_ratio,
                drop_path_rate=rates[i],
                fused_attn=fused_attn) for i in range(depth)
        ])
        self.classifiers = ModuleList([
            nn.Sequential(
                nn.Linear(embed_dims, hidden_channels, bias=False),
                nn.LayerNorm(hidden_channels), nn.ReLU(inplace=True),
                nn.Linear(hidden_channels, num_classes - 1))
            for _ in range(depth)
        ])

    def set_fused_attn(self, fused: bool) -> None:
        """Switch all decoder blocks between fused and eager attention."""
        for block in self.blocks:
            block.attn.fused_attn = fused

    def init_weights(self) -> None:
        """Truncated-normal Linear weights and mask token, unit LayerNorms."""
        super().init_weights()
        if self.init_cfg is not None:
            return
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        trunc_normal_(self.mask_token, std=.02)

    def _load_from_state_dict(self, state_dict: dict, prefix: str,
                              local_metadata: dict, strict: bool,
                              missing_keys: List[str],
                              unexpected_keys: List[str],
                              error_msgs: List[str]) -> None:
        """Fine-tune on another class count: when the checkpoint's final
        classifier layers (``classifiers.{i}.3``: weight (n, hidden_channels),
        bias (n, )) predict n != ``num_classes - 1`` classes but fit
        otherwise, those layers are re-initialised (truncated normal, zero
        bias) and one log line says so, instead of a size mismatch per
        tensor. Every other mismatch is reported as usual.

        Works for ``Module.load_state_dict`` and mmengine's
        ``load_checkpoint`` / ``runner.load_from`` (strict or not): the
        checkpoint's tensors of those layers are replaced in the incoming
        ``state_dict`` (a copy made by the loader) by the re-initialised
        ones, so no key is missing or mismatched.
        """
        reinit, old_out = [], None
        last = len(self.classifiers[0]) - 1
        for i, classifier in enumerate(self.classifiers):
            layer, key = classifier[last], f'{prefix}classifiers.{i}.{last}.'
            weight = state_dict.get(key + 'weight')
            bias = state_dict.get(key + 'bias')
            if not isinstance(weight, Tensor) or weight.dim() != 2 \
                    or weight.shape[1] != layer.in_features \
                    or weight.shape[0] == layer.out_features:
                continue  # absent, or loads (or mismatches) as usual
            if layer.bias is not None and not (isinstance(bias, Tensor) and
                                               bias.shape == weight.shape[:1]):
                continue
            trunc_normal_(layer.weight, std=.02)
            state_dict[key + 'weight'] = layer.weight.detach().clone()
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
                state_dict[key + 'bias'] = layer.bias.detach().clone()
            reinit.append(i)
            old_out = weight.shape[0]
        if reinit:
            which = str(reinit[0]) if len(reinit) == 1 else \
                '{' + ','.join(map(str, reinit)) + '}'
            print_log(
                f'{type(self).__name__}: checkpoint classifier has '
                f'{old_out + 1} classes, this model {self.num_classes} '
                f'(num_classes, column 0 included); re-initialised '
                f'{prefix}classifiers.{which}.{last} for fine-tuning',
                logger='current', level=logging.WARNING)
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys,
                                      error_msgs)

    @staticmethod
    def _as_tokens(feats) -> Tuple[Tensor, Tensor, Tuple[int, int, int]]:
        """Tokens (B, M, C), positions (B, M) and grid (t, h, w)."""
        if hasattr(feats, 'token_index'):
            return feats.tokens, feats.token_index, tuple(feats.grid)
        if isinstance(feats, (tuple, list)):
            feats = feats[-1]
        if not isinstance(feats, Tensor) or feats.dim() != 5:
            raise TypeError(
                'ContextRefinementHead takes EVADViT output or a (B, C, t, '
                f'h, w) feature map, got {type(feats).__name__}'
                f'{tuple(feats.shape) if isinstance(feats, Tensor) else ""}.')
        B, C, t, h, w = feats.shape
        index = torch.arange(t * h * w, device=feats.device)
        return (feats.flatten(2).transpose(1, 2), index.expand(B, -1),
                (t, h, w))

    def position_table(self, grid: Sequence[int]) -> Tensor:
        """(t*h*w, embed_dims) table for ``grid``: bicubic per slice, then
        linear over time when t differs from ``pos_grid``."""
        t, h, w = grid
        table = resize_position_table(self.pos_embed, self.pos_grid[1:],
                                      (h, w))
        if t != self.pos_grid[0]:
            table = table.reshape(self.pos_grid[0], h * w, -1).permute(1, 2, 0)
            table = F.interpolate(
                table, size=t, mode='linear', align_corners=False)
            table = table.permute(2, 0, 1)
        return table.reshape(t * h * w, -1)

    def _placement(self, token_index: Tensor,
                   grid: Sequence[int]) -> Tensor:
        """Where each token is written in the rebuilt map, (B, M)."""
        if self.token_order == 'position':
            return token_index
        num_key = grid[1] * grid[2]
        non_key = token_index[:, num_key:].sort(dim=1).values
        return torch.cat([token_index[:, :num_key], non_key], dim=1)

    def rebuild_feature_map(self, x: Tensor, place: Tensor,
                            grid: Sequence[int], pos: Tensor) -> Tensor:
        """Scatter tokens back into the (t, h, w) grid.

        Args:
            x (Tensor): (B, M, C) projected tokens.
            place (Tensor): (B, M) flat position of each token.
            grid (Sequence[int]): (t, h, w).
            pos (Tensor): (t*h*w, C) position table, added everywhere.

        Returns:
            Tensor: (B, C, t, h, w), ``mask_token`` at positions no token
            fills.
        """
        t, h, w = grid
        B = x.shape[0]
        full = self.mask_token.expand(B, t * h * w, -1).to(x.dtype)
        full = full.scatter(1, place[..., None].expand_as(x), x) + pos
        return full.transpose(1, 2).reshape(B, -1, t, h, w)

    def forward(self,
                feats: Union[Tensor, tuple],
                rois: Tensor,
                img_shapes: Optional[Sequence[Sequence[int]]] = None,
                actor_mask: Optional[Tensor] = None) -> List[Tensor]:
        """Action logits of every decoder block.

        Args:
            feats: :class:`EVADBackboneOutput`, or a (B, C, t, h, w) map (a
                tuple of maps uses the last).
            rois (Tensor): (K, 5) ``(batch_idx, x1, y1, x2, y2)`` in input
                pixels.
            img_shapes (Sequence, optional): (H, W) of each unpadded image,
                for clipping the extended boxes.
            actor_mask (Tensor, optional): (K, ) bool. Only these boxes are
                attended to (by the tokens and the boxes); the others still
                get logits. The kept boxes' logits are then those of the
                kept boxes alone, with a fixed K (an exported graph runs
                every query and masks the non-actors).

        Returns:
            list[Tensor]: ``depth`` tensors of (K, num_classes - 1) logits.
        """
        tokens, token_index, grid = self._as_tokens(feats)
        x = self.encoder_to_decoder(tokens)
        pos = self.position_table(grid).to(x.dtype)
        place = self._placement(token_index, grid)
        fmap = self.rebuild_feature_map(x, place, grid, pos)
        roi_feats = self.roi_extractor(fmap, rois, img_shapes)[0]
        cells = math.prod(roi_feats.shape[2:])
        if cells != self.actor_cells:
            raise ValueError(
                f'the roi_extractor gives {cells} cells per box (shape '
                f'{tuple(roi_feats.shape[1:])}) but actor_cells='
                f'{self.actor_cells}; set actor_cells to the unpooled '
                'cells (t with roi_temporal_pool=None) or pool them.')
        roi_feats = roi_feats.flatten(1)
        if self.actor_proj is not None:
            roi_feats = self.actor_proj(roi_feats)
        x = x + pos[place]
        seq, key_mask, slot = self._append_actors(x, roi_feats,
                                                  rois[:, 0].long(),
                                                  actor_mask)
        logits = []
        num_tokens = x.shape[1]
        batch_idx = rois[:, 0].long()
        for block, classifier in zip(self.blocks, self.classifiers):
            seq = block(seq, key_mask)
            logits.append(classifier(seq[batch_idx, num_tokens + slot]))
        return logits

    @staticmethod
    def _append_actors(x: Tensor, roi_feats: Tensor, batch_idx: Tensor,
                       actor_mask: Optional[Tensor] = None
                       ) -> Tuple[Tensor, Optional[Tensor], Tensor]:
        """Append each sample's box features after its tokens; boxes off
        ``actor_mask`` (K, ) are masked out as keys.

        Returns:
            tuple: sequence (B, M + n_max, C), key mask (B, M + n_max) or
            None when no slot is padding, and each box's slot (K, ).
        """
        B, M, C = x.shape
        K = roi_feats.shape[0]
        if K == 0:
            return x, None, batch_idx
        one_hot = F.one_hot(batch_idx, B)
        slot = (one_hot.cumsum(0) - 1)[torch.arange(K), batch_idx]
        n_max = int(one_hot.sum(0).max())
        boxes = x.new_zeros(B, n_max, C)
        boxes[batch_idx, slot] = roi_feats.to(x.dtype)
        valid = x.new_zeros(B, n_max, dtype=torch.bool)
        valid[batch_idx, slot] = True if actor_mask is None else actor_mask
        key_mask = None
        if actor_mask is not None or not bool(valid.all()):
            key_mask = torch.cat([valid.new_ones(B, M), valid], dim=1)
        return torch.cat([x, boxes], dim=1), key_mask, slot

    def loss(self,
             feats: Union[Tensor, tuple],
             rois: Tensor,
             labels: Tensor,
             img_shapes: Optional[Sequence[Sequence[int]]] = None) -> dict:
        """Sigmoid BCE of every block, ``d{j}.loss_action``.

        Args:
            feats, rois, img_shapes: see :meth:`forward`.
            labels (Tensor): (K, num_classes) multi-hot; column 0 unused.

        Returns:
            dict[str, Tensor]: one loss per decoder block.
        """
        if labels.shape != (rois.shape[0], self.num_classes):
            raise ValueError(
                f'labels of shape {tuple(labels.shape)} do not match '
                f'{rois.shape[0]} boxes x num_classes={self.num_classes}; '
                'set num_classes of the head to that of the dataset.')
        logits = self(feats, rois, img_shapes)
        targets = labels[:, 1:].to(logits[0].dtype)
        # mean over boxes of all processes, so that distributed training
        # matches one process with the whole batch
        num_boxes = reduce_mean(targets.new_tensor(float(len(rois))))
        avg_factor = num_boxes.clamp(min=1.) * targets.shape[1]
        losses = {}
        for j, logit in enumerate(logits):
            loss = F.binary_cross_entropy_with_logits(
                logit, targets, reduction='sum') / avg_factor
            if len(rois) == 0:  # keep every parameter in the graph
                loss = loss + sum(p.sum() for p in self.parameters()) * 0.
            losses[f'd{j}.loss_action'] = loss * self.loss_weight
        return losses

    def predict(self,
                feats: Union[Tensor, tuple],
                rois: Tensor,
                img_shapes: Optional[Sequence[Sequence[int]]] = None,
                actor_mask: Optional[Tensor] = None) -> Tensor:
        """(K, num_classes) probabilities of the last block, column 0 zero
        (``actor_mask``: see :meth:`forward`)."""
        probs = self(feats, rois, img_shapes, actor_mask)[-1].sigmoid()
        return F.pad(probs, (1, 0))
