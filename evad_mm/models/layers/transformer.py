"""Pre-norm ViT attention and block shared by the EVAD encoder and decoder.

Module and parameter names follow mmaction2's ``VisionTransformer``
(``norm1``, ``attn.{qkv,q_bias,v_bias,proj}``, ``norm2``,
``mlp.layers.{0.0,1}``) so VideoMAE checkpoints load unchanged.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmcv.cnn.bricks.transformer import FFN
from mmengine.model import BaseModule
from torch import Tensor, nn

from evad_mm.utils.typing_utils import ConfigType


class Attention(BaseModule):
    """Multi-head self-attention with fused and eager paths.

    The fused path is one ``F.scaled_dot_product_attention`` call. When
    ``query_weights`` is given, the eager path runs instead, in chunks of
    ``chunk_size`` queries, and also returns the column importance
    ``I_j = 1/N * sum_i w_i * mean_h A[h, i, j]`` used by keyframe-centric
    token pruning; no more than one chunk of the attention map is alive.

    Args:
        embed_dims (int): Token width C.
        num_heads (int): Number of heads; must divide ``embed_dims``.
        qkv_bias (bool): Learn separate q and v biases (k bias is zero), as
            VideoMAE does. Defaults to True.
        fused_attn (bool): Use ``F.scaled_dot_product_attention`` when no
            scores are needed. Defaults to True.
        chunk_size (int): Queries per chunk in the eager path.
            Defaults to 1024.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 qkv_bias: bool = True,
                 fused_attn: bool = True,
                 chunk_size: int = 1024) -> None:
        super().__init__()
        if embed_dims % num_heads != 0:
            raise ValueError(
                f'embed_dims ({embed_dims}) must be divisible by num_heads '
                f'({num_heads}); choose num_heads that divides embed_dims.')
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.head_dims = embed_dims // num_heads
        self.scale = self.head_dims**-0.5
        self.fused_attn = fused_attn
        self.chunk_size = chunk_size
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(embed_dims))
            self.v_bias = nn.Parameter(torch.zeros(embed_dims))
        else:
            self.q_bias = self.v_bias = None
        self.proj = nn.Linear(embed_dims, embed_dims)

    def _qkv(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """(B, N, C) -> q, k, v each (B, heads, N, C / heads)."""
        bias = None
        if self.q_bias is not None:
            bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias),
                              self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias)
        qkv = qkv.reshape(x.shape[0], x.shape[1], 3, self.num_heads,
                          self.head_dims).permute(2, 0, 3, 1, 4)
        return qkv.unbind(0)

    def forward(
        self,
        x: Tensor,
        attn_mask: Optional[Tensor] = None,
        query_weights: Optional[Tensor] = None
    ) -> Tuple[Tensor, Optional[Tensor]]:
        """Attend.

        Args:
            x (Tensor): Tokens, (B, N, C).
            attn_mask (Tensor, optional): Boolean (B, N) key mask, True for
                tokens that may be attended to.
            query_weights (Tensor, optional): (N, ) weight of each query in
                the importance score; asks for the scores.

        Returns:
            tuple: output (B, N, C) and importance (B, N) or None.
        """
        B, N, C = x.shape
        q, k, v = self._qkv(x)
        mask = None if attn_mask is None else attn_mask[:, None, None, :]
        if query_weights is None and self.fused_attn:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            scores = None
        else:
            out, scores = self._eager_attention(q, k, v, mask, query_weights)
        out = out.transpose(1, 2).reshape(B, N, C)
        return self.proj(out), scores

    def _eager_attention(
            self, q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor],
            query_weights: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
        """Softmax attention over query chunks, accumulating column scores.

        With scores, chunks are at most 256 queries (a chunk's map stays in
        cache) and each chunk's weighted column sum is one matrix-vector
        product per head.
        """
        N = q.shape[2]
        chunk = self.chunk_size
        outs = []
        scores = None
        if query_weights is not None:
            chunk = min(chunk, 256)
            scores = q.new_zeros(q.shape[0], q.shape[1], N)  # (B, heads, N)
        k_t = k.transpose(-2, -1)
        for start in range(0, N, chunk):
            attn = (q[:, :, start:start + chunk] * self.scale) @ k_t
            if mask is not None:
                attn = attn.masked_fill(~mask, float('-inf'))
            attn = attn.softmax(dim=-1)
            outs.append(attn @ v)
            if scores is not None:
                with torch.no_grad():
                    w = query_weights[start:start + chunk].to(attn.dtype)
                    scores += torch.matmul(w, attn.detach())
        if scores is not None:
            scores = scores.sum(1) / (N * self.num_heads)
        return torch.cat(outs, dim=2), scores


class TransformerBlock(BaseModule):
    """Pre-norm block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``.

    The two residual halves are exposed separately so that token pruning can
    select tokens between them.

    Args:
        embed_dims (int): Token width C.
        num_heads (int): Attention heads.
        mlp_ratio (float): Hidden width of the MLP over C. Defaults to 4.
        qkv_bias (bool): See :class:`Attention`. Defaults to True.
        drop_path_rate (float): Stochastic depth of both residuals.
        norm_cfg (dict): Norm layer config. Defaults to LN with eps 1e-6.
        fused_attn (bool): See :class:`Attention`. Defaults to True.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 drop_path_rate: float = 0.,
                 norm_cfg: ConfigType = dict(type='LN', eps=1e-6),
                 fused_attn: bool = True) -> None:
        super().__init__()
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn = Attention(embed_dims, num_heads, qkv_bias, fused_attn)
        self.drop_path = (
            DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity())
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.mlp = FFN(
            embed_dims=embed_dims,
            feedforward_channels=int(embed_dims * mlp_ratio),
            act_cfg=dict(type='GELU'),
            add_identity=False)

    def attention_residual(
        self,
        x: Tensor,
        attn_mask: Optional[Tensor] = None,
        query_weights: Optional[Tensor] = None
    ) -> Tuple[Tensor, Optional[Tensor]]:
        """(B, N, C) -> (B, N, C) and the importance scores (B, N) or None."""
        out, scores = self.attn(self.norm1(x), attn_mask, query_weights)
        return x + self.drop_path(out), scores

    def mlp_residual(self, x: Tensor) -> Tensor:
        """(B, N, C) -> (B, N, C)."""
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def forward(self, x: Tensor, attn_mask: Optional[Tensor] = None) -> Tensor:
        """(B, N, C) -> (B, N, C)."""
        return self.mlp_residual(self.attention_residual(x, attn_mask)[0])


def resize_position_table(table: Tensor, src_grid: Sequence[int],
                          dst_hw: Sequence[int]) -> Tensor:
    """Resize a (1, t*h*w, C) position table to another spatial grid.

    Each temporal slice is resized with bicubic interpolation
    (``align_corners=False``), as mmaction2's ``VisionTransformer`` does.

    Args:
        table (Tensor): (1, t * h0 * w0, C) table, t-major.
        src_grid (Sequence[int]): (h0, w0) of the table.
        dst_hw (Sequence[int]): (h, w) wanted.

    Returns:
        Tensor: (1, t * h * w, C).
    """
    if tuple(src_grid) == tuple(dst_hw):
        return table
    C = table.shape[-1]
    grid = table.reshape(-1, src_grid[0], src_grid[1], C).permute(0, 3, 1, 2)
    grid = F.interpolate(
        grid, size=tuple(dst_hw), mode='bicubic', align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, -1, C)
