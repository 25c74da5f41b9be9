"""Keyframe-centric token pruning (EVAD, Sec. 3.2) as pure functions.

Token layout everywhere: [batch, tokens, channels] with the ``Nk`` keyframe
tokens first (raster order), then the non-keyframe tokens.
"""
import math
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor


def keyframe_first_order(grid: Sequence[int], keyframe_index: int,
                         device: Optional[torch.device] = None) -> Tensor:
    """Positions of the flattened (t, h, w) grid, keyframe slice first.

    Args:
        grid (Sequence[int]): (t, h, w).
        keyframe_index (int): Temporal slice holding the keyframe.

    Returns:
        Tensor: (t*h*w, ) int64: slice ``keyframe_index`` in raster order,
        then the other slices in ascending order.
    """
    t, h, w = grid
    positions = torch.arange(t * h * w, device=device).view(t, h * w)
    others = [i for i in range(t) if i != keyframe_index]
    return torch.cat([positions[keyframe_index], positions[others].flatten()])


def keyframe_query_weights(num_tokens: int, num_keyframe_tokens: int,
                           keyframe_weight: float,
                           device: Optional[torch.device] = None) -> Tensor:
    """(N, ) query weights: ``keyframe_weight`` for the keyframe queries."""
    weights = torch.ones(num_tokens, device=device)
    weights[:num_keyframe_tokens] = keyframe_weight
    return weights


def num_kept_tokens(num_tokens: int, keep_rate: float) -> int:
    """k = ceil(rho * N), the tokens left after a pruning block."""
    return min(num_tokens, math.ceil(keep_rate * num_tokens))


@torch.no_grad()
def select_non_keyframe_tokens(scores: Tensor, num_keyframe_tokens: int,
                               keep_rate: float) -> Optional[Tensor]:
    """Choose the non-keyframe tokens to keep.

    Args:
        scores (Tensor): (B, N) importance of every current token (keyframe
            tokens first; their scores are ignored).
        num_keyframe_tokens (int): Nk, all of which are kept.
        keep_rate (float): rho in (0, 1].

    Returns:
        Tensor or None: (B, k - Nk) indices into the non-keyframe part,
        highest score first; None when nothing is pruned (k == N).
    """
    num_tokens = scores.shape[1]
    k = num_kept_tokens(num_tokens, keep_rate)
    if k >= num_tokens:
        return None
    num_keep = max(k - num_keyframe_tokens, 0)
    return scores[:, num_keyframe_tokens:].topk(num_keep, dim=1).indices


def gather_kept_tokens(
        tensors: Union[Tensor, Tuple[Tensor, ...]], keep: Tensor,
        num_keyframe_tokens: int) -> Tuple[Tensor, ...]:
    """Keep the keyframe tokens and the chosen non-keyframe tokens.

    Args:
        tensors (Tensor | tuple[Tensor]): each (B, N, ...) with keyframe
            tokens first, e.g. the tokens (B, N, C) and their positions
            (B, N).
        keep (Tensor): (B, n) indices from :func:`select_non_keyframe_tokens`.
        num_keyframe_tokens (int): Nk.

    Returns:
        tuple[Tensor]: each (B, Nk + n, ...).
    """
    if isinstance(tensors, Tensor):
        tensors = (tensors, )
    kept = []
    for x in tensors:
        index = keep.view(*keep.shape, *([1] * (x.dim() - 2)))
        index = index.expand(-1, -1, *x.shape[2:])
        non_key = x[:, num_keyframe_tokens:].gather(1, index)
        kept.append(torch.cat([x[:, :num_keyframe_tokens], non_key], dim=1))
    return tuple(kept)


def per_layer(value: Union[float, Sequence[float]], num_layers: int,
              name: str) -> Tuple[float, ...]:
    """Turn one number or one per layer into a tuple of ``num_layers``."""
    if isinstance(value, (int, float)):
        return (float(value), ) * num_layers
    value = tuple(float(v) for v in value)
    if len(value) != num_layers:
        raise ValueError(
            f'{name} has {len(value)} values but there are {num_layers} '
            f'pruning layers; give one float or one per prune layer.')
    return value
