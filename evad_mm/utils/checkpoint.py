"""Loading pretrained weights into a module, loudly and safely."""
import os.path as osp
from typing import Dict, Optional

from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader
from torch import Tensor, nn

from evad_mm.compat import safe_torch_load


def _first(names, n: int = 5) -> str:
    names = sorted(names)
    more = f', ... ({len(names) - n} more)' if len(names) > n else ''
    return ', '.join(names[:n]) + more


def read_state_dict(filename: str,
                    prefix: Optional[str] = None,
                    map_location: str = 'cpu') -> Dict[str, Tensor]:
    """A checkpoint's weights with ``weights_only=True``.

    Unwraps ``state_dict`` / ``model`` / ``module`` nesting and keeps the
    keys under ``prefix`` (stripped). Local files go through
    :func:`evad_mm.compat.safe_torch_load`, which explains a refusal; URLs
    through mmengine's loaders (torch's default ``weights_only=True``).
    """
    if osp.isfile(filename):
        ckpt = safe_torch_load(filename, map_location=map_location)
    else:
        ckpt = CheckpointLoader.load_checkpoint(filename, map_location)
    for key in ('state_dict', 'model', 'module'):
        if isinstance(ckpt, dict) and isinstance(ckpt.get(key), dict):
            ckpt = ckpt[key]
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        ckpt = {k[len(prefix):]: v for k, v in ckpt.items()
                if k.startswith(prefix)}
        if not ckpt:
            raise RuntimeError(f'{filename} has no keys starting with '
                               f'{prefix!r}; check init_cfg.prefix.')
    return ckpt


def load_pretrained(module: nn.Module,
                    filename: str,
                    prefix: Optional[str] = None,
                    may_miss: tuple = (),
                    map_location: str = 'cpu') -> dict:
    """Load what fits, list the rest, and fail if too little loads.

    Missing, unexpected and shape-mismatched keys are logged as counts with
    the first names. Any missing or mismatched key other than those starting
    with one of ``may_miss`` (e.g. a final norm a recogniser lacks) raises a
    ``RuntimeError``: a partial load must not pass silently.

    Returns:
        dict: ``missing``, ``unexpected``, ``mismatched`` key lists.
    """
    state = read_state_dict(filename, prefix, map_location)
    own = module.state_dict()
    mismatched = [k for k, v in state.items()
                  if k in own and own[k].shape != v.shape]
    loadable = {k: v for k, v in state.items()
                if k in own and k not in mismatched}
    missing = [k for k in own if k not in loadable]
    unexpected = [k for k in state if k not in own]
    module.load_state_dict(loadable, strict=False)
    name = type(module).__name__
    print_log(
        f'{name}: loaded {len(loadable)}/{len(own)} tensors from {filename}'
        + (f'; missing {len(missing)}: {_first(missing)}' if missing else '')
        + (f'; unexpected {len(unexpected)}: {_first(unexpected)}'
           if unexpected else '')
        + (f'; shape mismatch {len(mismatched)}: {_first(mismatched)}'
           if mismatched else ''),
        logger='current')
    fatal = [k for k in missing + mismatched if not k.startswith(may_miss)]
    if fatal:
        raise RuntimeError(
            f'{name}: {len(fatal)} weights could not be loaded from '
            f'{filename} ({_first(fatal)}). Is it a checkpoint of this '
            'model, and is init_cfg.prefix right (e.g. "backbone.")? '
            'Convert original VideoMAE weights with '
            'tools/model_converters/videomae_to_mm.py.')
    return dict(missing=missing, unexpected=unexpected, mismatched=mismatched)
