"""Helpers shared by the checkpoint converters in this folder.

A converter is a rename table: a list of ``(pattern, target)`` where
``pattern`` must match a whole source key and ``target`` is a ``re``
template (``r'\\1'``) or a function of the match. The first matching rule
wins; keys no rule matches are reported, never dropped silently.
"""
import os
import os.path as osp
import pickle
import re
import sys
from typing import Callable, Dict, Iterable, List, Sequence, Tuple, Union

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:  # run as `python tools/model_converters/x.py`
    sys.path.insert(0, REPO)
from evad_mm.utils.checkpoint import (STATE_DICT_KEYS,  # noqa: E402
                                      read_checkpoint, unwrap_state_dict)

Rule = Tuple[str, Union[str, Callable[[re.Match], str]]]


class ConversionError(ValueError):
    """Raised when a checkpoint cannot be converted as asked."""


def vit_rules(src: str, dst: str) -> List[Rule]:
    """Rename VideoMAE ViT keys (``src`` prefix) to mmaction2's ViT names
    (``dst`` prefix): ``patch_embed.proj`` -> ``patch_embed.projection``,
    ``mlp.fc1``/``fc2`` -> ``mlp.layers.0.0``/``layers.1``, the rest as is.
    mmaction2 names are accepted too, so converting twice is harmless."""
    s, blk = re.escape(src), re.escape(src) + r'blocks\.(\d+)\.'
    return [
        (s + r'patch_embed\.proj(?:ection)?\.(weight|bias)',
         dst + r'patch_embed.projection.\1'),
        (blk + r'(norm[12]\.(?:weight|bias)|attn\.(?:qkv\.weight|q_bias|'
         r'v_bias|proj\.weight|proj\.bias))', dst + r'blocks.\1.\2'),
        (blk + r'mlp\.(?:fc1|layers\.0\.0)\.(weight|bias)',
         dst + r'blocks.\1.mlp.layers.0.0.\2'),
        (blk + r'mlp\.(?:fc2|layers\.1)\.(weight|bias)',
         dst + r'blocks.\1.mlp.layers.1.\2'),
        (s + r'norm\.(weight|bias)', dst + r'norm.\1'),
    ]


def load_state_dict(path: str,
                    nests: Sequence[str] = STATE_DICT_KEYS
                    ) -> Tuple[dict, dict]:
    """Read ``path`` with evad_mm's checkpoint loader (``weights_only=True``)
    and return the state dict (nested under one of ``nests``, ``module.``
    prefixes stripped) and the whole loaded object. Raises
    :class:`ConversionError` with the loader's explanation, e.g. for files
    that need code execution to unpickle."""
    try:
        ckpt = read_checkpoint(path)
        return unwrap_state_dict(ckpt, nests=nests, source=path), ckpt
    except (OSError, pickle.UnpicklingError, TypeError) as err:
        raise ConversionError(f'Cannot load {path}: {err}') from err


def rename(state: Dict[str, torch.Tensor], rules: Iterable[Rule],
           drop: Sequence[str] = ()) -> Tuple[dict, List[str], List[str]]:
    """Apply ``rules``. Returns (renamed dict, source keys dropped on purpose
    because they match a ``drop`` pattern, source keys nothing matched)."""
    rules = [(re.compile(p), t) for p, t in rules]
    out, dropped, unmapped = {}, [], []
    for key, value in state.items():
        for pattern, target in rules:
            m = pattern.fullmatch(key)
            if m:
                new = target(m) if callable(target) else m.expand(target)
                if new in out:
                    raise ConversionError(f'{key!r} and another source key '
                                          f'both map to {new!r}.')
                out[new] = value
                break
        else:
            if any(re.fullmatch(p, key) for p in drop):
                dropped.append(key)
            else:
                unmapped.append(key)
    return out, dropped, unmapped


def preview(keys: Sequence[str], n: int = 6) -> str:
    """'3 keys: a, b, c' with at most ``n`` names."""
    keys = list(keys)
    more = f', ... (+{len(keys) - n})' if len(keys) > n else ''
    return f'{len(keys)} key(s): {", ".join(keys[:n])}{more}'


def save(path: str, state_dict: dict, meta: dict) -> None:
    """Write an mmengine checkpoint ``dict(state_dict=..., meta=...)``;
    ``meta`` holds plain types only, so ``weights_only`` loading works."""
    if osp.dirname(path):
        os.makedirs(osp.dirname(path), exist_ok=True)
    torch.save(dict(state_dict=state_dict, meta=meta), path)
    print(f'Saved {len(state_dict)} tensors to {path}')
