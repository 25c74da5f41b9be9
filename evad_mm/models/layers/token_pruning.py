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


# Which tokens a pruning block keeps (``EVADViT(pruning=...)``):
# 'keyframe' ranks the non-keyframe tokens by attention and keeps every
# keyframe token (EVAD); 'random' keeps as many non-keyframe tokens, chosen
# uniformly at random; 'unified' ranks all tokens alike, keyframe included.
PRUNING_STRATEGIES = ('keyframe', 'random', 'unified')


@torch.no_grad()
def random_non_keyframe_tokens(
        batch_size: int,
        num_tokens: int,
        num_keyframe_tokens: int,
        keep_rate: float,
        device: Optional[torch.device] = None,
        generator: Optional[torch.Generator] = None) -> Optional[Tensor]:
    """Non-keyframe tokens chosen uniformly at random, as many as
    :func:`select_non_keyframe_tokens` keeps.

    Args:
        batch_size (int): B; every sample gets its own draw.
        num_tokens (int): N, the current tokens (keyframe tokens first).
        num_keyframe_tokens (int): Nk, all of which are kept.
        keep_rate (float): rho in (0, 1].
        device (torch.device, optional): Device of the indices.
        generator (torch.Generator, optional): Random source on ``device``;
            None uses torch's global generator (which mmengine seeds from
            ``randomness.seed``).

    Returns:
        Tensor or None: (B, k - Nk) indices into the non-keyframe part, in
        random order; None when nothing is pruned (k == N).
    """
    k = num_kept_tokens(num_tokens, keep_rate)
    if k >= num_tokens:
        return None
    noise = torch.rand(batch_size, num_tokens - num_keyframe_tokens,
                       device=device, generator=generator)
    return noise.topk(max(k - num_keyframe_tokens, 0), dim=1).indices


@torch.no_grad()
def select_tokens_unified(scores: Tensor,
                          keep_rate: float) -> Optional[Tensor]:
    """Keep the ``ceil(rho * N)`` highest-scoring tokens of all, keyframe
    tokens treated as any other (unified pruning, EVAD Table 1c).

    Args:
        scores (Tensor): (B, N) importance of every current token.
        keep_rate (float): rho in (0, 1].

    Returns:
        Tensor or None: (B, k) indices into all N tokens in ascending order,
        so that the kept tokens stay in their current order (keyframe
        tokens, as many as survive, first); None when k == N. Use with
        :func:`gather_kept_tokens` and ``num_keyframe_tokens=0``.
    """
    keep = select_non_keyframe_tokens(scores, 0, keep_rate)
    return None if keep is None else keep.sort(dim=1).values


def keyframe_slice_tokens(x: Tensor, token_index: Tensor,
                          grid: Sequence[int], keyframe_index: int) -> Tensor:
    """The tokens of one temporal slice on its full (h, w) grid, wherever
    they are in the sequence.

    Args:
        x (Tensor): (B, M, C) tokens in any order.
        token_index (Tensor): (B, M) int64 position of each token in the
            flattened (t, h, w) grid (t-major).
        grid (Sequence[int]): (t, h, w).
        keyframe_index (int): The slice wanted.

    Returns:
        Tensor: (B, h*w, C) in raster order, zero at the positions of the
        slice that no token of ``x`` holds.
    """
    _, h, w = grid
    num_key = h * w
    B, _, C = x.shape
    local = token_index - keyframe_index * num_key
    in_slice = (local >= 0) & (local < num_key)
    # tokens of other slices all go to one extra slot, dropped after
    slot = torch.where(in_slice, local, torch.full_like(local, num_key))
    full = x.new_zeros(B, num_key + 1, C)
    full = full.scatter(1, slot[..., None].expand(-1, -1, C), x)
    return full[:, :num_key]
