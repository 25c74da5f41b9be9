"""Pre-norm ViT attention and block shared by the EVAD encoder and decoder.

Module and parameter names follow mmaction2's ``VisionTransformer``
(``norm1``, ``attn.{qkv,q_bias,v_bias,proj}``, ``norm2``,
``mlp.layers.{0.0,1}``) so VideoMAE checkpoints load unchanged.
"""
from typing import Iterator, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmcv.cnn.bricks.transformer import FFN
from mmengine.model import BaseModule
from torch import Tensor, nn

from evad_mm.utils.typing_utils import ConfigType


# Queries per chunk when importance scores are accumulated: a chunk of the
# attention map stays in cache and its weighted column sum is one
# matrix-vector product per head.
SCORE_CHUNK_SIZE = 256


def _upcast(x: Tensor) -> Tensor:
    """``x`` in float32 when it is float16 / bfloat16, else unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class Attention(BaseModule):
    """Multi-head self-attention with fused and eager paths.

    The fused path is one ``F.scaled_dot_product_attention`` call. When
    ``query_weights`` is given, the attention also returns the column
    importance ``I_j = 1/N * sum_i w_i * mean_h A[h, i, j]`` used by
    keyframe-centric token pruning. The scores come from softmax maps of
    ``SCORE_CHUNK_SIZE`` queries at a time (no more than one chunk of the map
    is alive), computed in float32 with autocast off, and carry no gradient
    (the ranking is not differentiated):

    * gradients needed and ``fused_attn``: the output comes from the fused
      call, which keeps no attention map for the backward pass, and the
      scores from a separate pass over q and k without grad;
    * otherwise (inference, or ``fused_attn=False``, the reference): one
      eager pass gives both, in float32 under autocast. In inference the two
      passes were no faster (one ViT-B pruning block, 1568 tokens, 2 CPU
      threads: median 603 ms against 588 ms for one pass) and recompute
      q k^T, so the single pass stays.

    Args:
        embed_dims (int): Token width C.
        num_heads (int): Number of heads; must divide ``embed_dims``.
        qkv_bias (bool): Learn separate q and v biases (k bias is zero), as
            VideoMAE does. Defaults to True.
        fused_attn (bool): Use ``F.scaled_dot_product_attention`` for the
            output (with scores: when gradients are needed).
            Defaults to True.
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
            tuple: output (B, N, C) and float32 importance (B, N) (without
            grad) or None.
        """
        B, N, C = x.shape
        q, k, v = self._qkv(x)
        mask = None if attn_mask is None else attn_mask[:, None, None, :]
        scores = None
        if query_weights is None:
            if self.fused_attn:
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            else:
                out = self._eager_attention(q, k, v, mask)
        elif self.fused_attn and torch.is_grad_enabled() and x.requires_grad:
            # the eager pass would keep its whole attention map for backward
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            scores = self.importance_scores(q, k, mask, query_weights)
        else:
            out, scores = self._ranking_pass(q, k, v, mask, query_weights)
        out = out.transpose(1, 2).reshape(B, N, C)
        return self.proj(out), scores

    def _softmax_chunks(self, q: Tensor, k: Tensor, mask: Optional[Tensor],
                        chunk: int) -> Iterator[Tuple[int, Tensor]]:
        """Yield ``(start, softmax(q[start:start + chunk] k^T * scale))``,
        each map (B, heads, <= chunk, N)."""
        k_t = k.transpose(-2, -1)
        for start in range(0, q.shape[2], chunk):
            attn = (q[:, :, start:start + chunk] * self.scale) @ k_t
            if mask is not None:
                attn = attn.masked_fill(~mask, float('-inf'))
            yield start, attn.softmax(dim=-1)

    def _eager_attention(self, q: Tensor, k: Tensor, v: Tensor,
                         mask: Optional[Tensor]) -> Tensor:
        """Softmax attention over chunks of ``chunk_size`` queries."""
        return torch.cat([
            attn @ v
            for _, attn in self._softmax_chunks(q, k, mask, self.chunk_size)
        ], dim=2)

    def _ranking_pass(self, q: Tensor, k: Tensor, v: Optional[Tensor],
                      mask: Optional[Tensor], query_weights: Tensor
                      ) -> Tuple[Optional[Tensor], Tensor]:
        """One pass over float32 softmax maps of ``SCORE_CHUNK_SIZE``
        queries, autocast off.

        Args:
            q, k, v (Tensor): (B, heads, N, C / heads); ``v`` may be None.
            mask (Tensor, optional): Boolean (B, 1, 1, N) key mask.
            query_weights (Tensor): (N, ).

        Returns:
            tuple: the attention output (B, heads, N, C / heads) in the
            dtype of ``v`` (None without ``v``), and the float32 importance
            scores (B, N), which carry no gradient.
        """
        dtype = None if v is None else v.dtype
        with torch.autocast(q.device.type, enabled=False):
            q, k = _upcast(q), _upcast(k)
            v = None if v is None else _upcast(v)
            scores = q.new_zeros(q.shape[0], q.shape[1], q.shape[2])
            outs = []
            chunk = min(self.chunk_size, SCORE_CHUNK_SIZE)
            for start, attn in self._softmax_chunks(q, k, mask, chunk):
                if v is not None:
                    outs.append(attn @ v)
                self._accumulate_scores(scores, start, attn, query_weights)
        out = torch.cat(outs, dim=2).to(dtype) if outs else None
        return out, self._finish_scores(scores)

    @torch.no_grad()
    def importance_scores(self, q: Tensor, k: Tensor, mask: Optional[Tensor],
                          query_weights: Tensor) -> Tensor:
        """The importance scores alone, (B, N) float32 without grad, equal to
        those of the eager pass; see :meth:`_ranking_pass`."""
        return self._ranking_pass(q.detach(), k.detach(), None, mask,
                                  query_weights)[1]

    @staticmethod
    @torch.no_grad()
    def _accumulate_scores(scores: Tensor, start: int, attn: Tensor,
                           query_weights: Tensor) -> None:
        """``scores`` (B, heads, N) += weighted column sums of one chunk."""
        w = query_weights[start:start + attn.shape[2]].to(attn.dtype)
        scores += torch.matmul(w, attn.detach())

    def _finish_scores(self, scores: Tensor) -> Tensor:
        """(B, heads, N) sums -> (B, N) mean over heads and queries."""
        return scores.sum(1) / (scores.shape[2] * self.num_heads)


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
