"""Reading checkpoints and loading them into models: the one place for it.

Everything in evad_mm that reads weights comes here: ``init_detector``,
``EVADViT``'s ``Pretrained`` initialisation and the converters of
``tools/model_converters``.

* :func:`safe_torch_load`: ``torch.load(weights_only=True)`` with the
  mmengine allow-list of :mod:`evad_mm.compat`; a file that needs code
  execution to unpickle raises :class:`UnsafeCheckpointError`, which says
  what to do.
* :func:`read_checkpoint`: a local file, an http(s) URL (cached as torch hub
  caches it) or another ``mmengine.fileio`` backend.
* :func:`unwrap_state_dict`: the weights inside ``state_dict`` /
  ``model_state`` / ``model`` / ``module``, DDP's ``module.`` key prefixes
  stripped, optionally only the keys under one ``prefix``.
* :func:`load_state_dict` and :func:`load_checkpoint`: load into a module
  through each module's ``_load_from_state_dict`` (so hooks such as
  ``ContextRefinementHead``'s class-count adaptation run) and log one line:
  counts and the first few keys of what is missing, unexpected or of
  another shape. A checkpoint of another model, into which fewer than half
  of the module's tensors fit, is refused with
  :class:`CheckpointMismatchError`, which names the config the checkpoint
  seems to belong to (from its ``meta`` or its keys).
"""
import ast
import glob
import logging
import os
import os.path as osp
import pickle
import re
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import urlparse

import torch
from mmengine.dist import barrier, get_dist_info
from mmengine.fileio import get_local_path
from mmengine.logging import print_log
from mmengine.model import BaseTTAModel, is_model_wrapper
from torch import Tensor, nn

from evad_mm.compat import allow_mmengine_checkpoint_globals

__all__ = [
    'STATE_DICT_KEYS', 'UnsafeCheckpointError', 'CheckpointMismatchError',
    'LoadReport', 'safe_torch_load', 'read_checkpoint', 'unwrap_state_dict',
    'describe_checkpoint', 'load_state_dict', 'load_checkpoint'
]

# Where checkpoints keep their weights: mmengine ``state_dict``, the EVAD
# authors' (PySlowFast) ``model_state``, VideoMAE's ``model`` / ``module``.
STATE_DICT_KEYS = ('state_dict', 'model_state', 'model', 'module')
# Below this fraction of the module's tensors a checkpoint is another
# model's.
MIN_FIT = 0.5
_REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
_SHOWN = 3  # keys named per list in a report


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A file that ``torch.load(weights_only=True)`` refuses to unpickle."""


class CheckpointMismatchError(RuntimeError):
    """A checkpoint that does not fit the module it is loaded into."""


def _preview(keys: Sequence[str], n: int = _SHOWN) -> str:
    """``'5: a, b, c, ... (+2)'``: the count and the first ``n`` keys."""
    keys = list(keys)
    more = f', ... (+{len(keys) - n})' if len(keys) > n else ''
    return f'{len(keys)}: ' + ', '.join(keys[:n]) + more


def _name(filename) -> str:
    return str(getattr(filename, 'name', filename))


# ------------------------------------------------------------------ read ---
def safe_torch_load(filename, map_location: Any = 'cpu') -> Any:
    """``torch.load(filename, map_location, weights_only=True)`` with the
    mmengine allow-list (:func:`evad_mm.compat.
    allow_mmengine_checkpoint_globals`).

    Args:
        filename (str | PathLike | file object): What to load.
        map_location: As for ``torch.load``. Defaults to ``'cpu'``.

    Raises:
        UnsafeCheckpointError: (a ``pickle.UnpicklingError``) if the file
            needs more than tensors, containers and the allow-listed types;
            the message says how to convert a trusted file.
    """
    allow_mmengine_checkpoint_globals()
    try:
        return torch.load(filename, map_location=map_location,
                          weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r'WeightsUnpickler error:\s*(.+)', str(err))
        raise UnsafeCheckpointError(
            f'Refusing to load {_name(filename)!r} with '
            'torch.load(weights_only=True): '
            f'{(found.group(1) if found else str(err)).strip()}\n'
            'Unpickling this file needs arbitrary code execution, which can '
            'run malicious code. If the file comes from a source you trust, '
            'convert it once: `ckpt = torch.load(f, weights_only=False)`, '
            "re-save its weights with `torch.save({'state_dict': "
            "ckpt.get('state_dict', ckpt)}, out)` and load the converted "
            'file instead.') from err


def _download(url: str) -> str:
    """The cached local copy of ``url`` (torch hub's cache folder, as
    mmengine's http loader uses); rank 0 downloads first."""
    cached = osp.join(torch.hub.get_dir(), 'checkpoints',
                      osp.basename(urlparse(url).path))
    rank, world_size = get_dist_info()
    if rank == 0 and not osp.isfile(cached):
        os.makedirs(osp.dirname(cached), exist_ok=True)
        print_log(f'Downloading {url} to {cached}', logger='current')
        torch.hub.download_url_to_file(url, cached)
    if world_size > 1:
        barrier()
    return cached


def read_checkpoint(filename: Union[str, os.PathLike],
                    map_location: Any = 'cpu') -> Any:
    """Read a checkpoint without running code from it.

    Local files, http(s) URLs (downloaded once into torch hub's cache, where
    mmengine's http loader also keeps them) and the other storage backends
    of ``mmengine.fileio`` (``s3://``, ...) are all read with
    :func:`safe_torch_load`. (mmengine's ``CheckpointLoader`` is not used:
    its http loader unpickles with ``weights_only=False``.)

    Raises:
        FileNotFoundError: For a local path that does not exist.
        UnsafeCheckpointError: See :func:`safe_torch_load`.
    """
    filename = os.fspath(filename)
    if filename.startswith(('http://', 'https://')):
        return safe_torch_load(_download(filename), map_location)
    if '://' in filename:
        with get_local_path(filename) as local:
            return safe_torch_load(local, map_location)
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'Checkpoint not found: {filename}')
    return safe_torch_load(filename, map_location)


def unwrap_state_dict(checkpoint: Any,
                      prefix: Optional[str] = None,
                      nests: Sequence[str] = STATE_DICT_KEYS,
                      source: str = 'the checkpoint') -> Dict[str, Tensor]:
    """The weights of a loaded checkpoint.

    Descends into the first of ``nests`` that holds a dict, as long as one
    does (``{'model': {'module': ...}}`` too), strips DDP's ``module.`` key
    prefixes and, with ``prefix``, keeps only the keys under it (stripped),
    as mmengine's ``Pretrained`` init does. The state dict's ``_metadata``
    (module versions) follows the keys.

    Args:
        checkpoint: What :func:`read_checkpoint` returned.
        prefix (str, optional): E.g. ``'backbone.'`` (the dot is optional).
        nests (Sequence[str]): Keys that may hold the weights, in order.
        source (str): How errors name the checkpoint (its file name).

    Returns:
        dict[str, Tensor]: An ``OrderedDict`` of tensors.

    Raises:
        TypeError: If no dict of tensors is found.
        CheckpointMismatchError: If no key starts with ``prefix``.
    """
    state = checkpoint
    while isinstance(state, Mapping):
        inner = next((state[k] for k in nests
                      if isinstance(state.get(k), Mapping)), None)
        if inner is None:
            break
        state = inner
    if not isinstance(state, Mapping):
        raise TypeError(f'{source} holds a {type(state).__name__}, not a '
                        'state dict or a checkpoint dict.')
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'

    def rekey(key: str) -> Optional[str]:
        """Without ``module.`` and ``prefix``; None if not under it."""
        key = re.sub(r'^(module\.)+', '', key)
        if not prefix:
            return key
        return key[len(prefix):] if key.startswith(prefix) else None

    out = OrderedDict()
    for key, value in state.items():
        new_key = rekey(key)
        if new_key is not None:
            out[new_key] = value
    if prefix and not out:
        raise CheckpointMismatchError(
            f'{source} has no keys starting with {prefix!r} (parts: '
            f'{_parts(state)}); check the prefix (init_cfg.prefix).')
    bad = [k for k, v in out.items() if not isinstance(v, Tensor)]
    if bad:
        raise TypeError(f'{source}: no state dict found (looked in '
                        f'{list(nests)}); non-tensor entries {_preview(bad)}')
    metadata = getattr(state, '_metadata', None)
    if metadata is not None:  # keyed by module path, without the dot
        out._metadata = OrderedDict(
            (rekey(k + '.')[:-1], v) for k, v in metadata.items()
            if rekey(k + '.') is not None)
    return out


# -------------------------------------------------------------- describe ---
def _parts(state: Mapping) -> str:
    """``'backbone (152), cls_head (2)'``: tensors per top-level name."""
    counts = Counter(k.split('.')[0] for k in state)
    return ', '.join(f'{name} ({n})' for name, n in counts.most_common())


def _config_from_experiment(name: str) -> str:
    """``'evad_toy_ava_20240101_120000'`` -> ``'configs/evad_toy_ava.py'``
    (mmengine names experiments after the config and the start time)."""
    stem = re.sub(r'_\d{8}_\d{6}$', '', name)
    found = sorted(glob.glob(osp.join(_REPO, 'configs', '**', stem + '.py'),
                             recursive=True))
    return osp.relpath(found[0], _REPO) if found else f'{stem}.py'


def _type_of(call: Optional[ast.AST]) -> Optional[str]:
    """The constant ``type=`` of a ``dict(...)`` call node, if any."""
    for keyword in getattr(call, 'keywords', []):
        if keyword.arg == 'type' and isinstance(keyword.value, ast.Constant):
            return keyword.value.value
    return None


def _model_types(cfg_text: str) -> str:
    """``'EVAD (backbone EVADViT)'`` from a config's text (mmengine stores
    ``cfg.pretty_text`` in its checkpoints). Parsed, never executed."""
    try:
        tree = ast.parse(cfg_text)
    except SyntaxError:
        return ''
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and isinstance(node.value,
                                                            ast.Call)
                and any(isinstance(t, ast.Name) and t.id == 'model'
                        for t in node.targets)):
            continue
        model = _type_of(node.value)
        backbone = _type_of(next((k.value for k in node.value.keywords
                                  if k.arg == 'backbone'), None))
        if model:
            return model + (f' (backbone {backbone})' if backbone else '')
    return ''


def describe_checkpoint(checkpoint: Any,
                        state_dict: Optional[Mapping] = None) -> str:
    """What model a checkpoint seems to belong to, in one sentence.

    From its ``meta``: the ``experiment_name`` mmengine's runner saves
    (``<config>_<date>_<time>``, matched to a file under ``configs/``) and
    the model in ``meta['cfg']``, or the ``config`` / ``converter`` the
    converters of ``tools/model_converters`` save. Otherwise from the keys:
    the EVAD authors' checkpoints, original VideoMAE weights, and the
    top-level parts with their tensor counts.
    """
    state = state_dict if state_dict is not None else unwrap_state_dict(
        checkpoint)
    meta = checkpoint.get('meta') if isinstance(checkpoint, Mapping) else None
    meta = meta if isinstance(meta, Mapping) else {}
    says = []
    if isinstance(meta.get('experiment_name'), str):
        says.append(
            f'it seems to belong to '
            f'{_config_from_experiment(meta["experiment_name"])} '
            f'(meta experiment_name {meta["experiment_name"]!r})')
    if isinstance(meta.get('cfg'), str) and _model_types(meta['cfg']):
        says.append(f'its config builds {_model_types(meta["cfg"])}')
    if isinstance(meta.get('config'), str):
        says.append(f'it was converted for {meta["config"]}')
    if isinstance(meta.get('converter'), str):
        says.append(f'written by tools/model_converters/'
                    f'{meta["converter"]}.py')
    keys = set(state)
    if isinstance(checkpoint, Mapping) and 'model_state' in checkpoint \
            or any(k.startswith('det_head.') for k in keys):
        says.append("it looks like the EVAD authors' checkpoint: convert it "
                    'with tools/model_converters/official_evad_to_mm.py')
    elif any(re.match(r'(encoder\.)?patch_embed\.proj\.weight$', k)
             for k in keys):
        says.append('it looks like original VideoMAE weights: convert them '
                    'with tools/model_converters/videomae_to_mm.py')
    says.append(f'its parts: {_parts(state)}')
    return '; '.join(says)


# ------------------------------------------------------------------ load ---
@dataclass
class LoadReport:
    """What :func:`load_state_dict` loaded.

    Attributes:
        source (str): The checkpoint's name.
        module (str): The class name of the module loaded into.
        num_loaded (int): Tensors of the module that were loaded.
        num_total (int): Tensors of the module (its state dict).
        missing (list[str]): Module keys the checkpoint lacks.
        unexpected (list[str]): Checkpoint keys the module lacks.
        mismatched (list[str]): Keys of both, shapes as
            ``'key (ckpt shape vs module shape)'``.
        meta (dict): The checkpoint's ``meta`` (mmengine checkpoints: epoch,
            cfg, dataset_meta, ...), ``{}`` without one.
    """
    source: str
    module: str
    num_loaded: int
    num_total: int
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: List[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def __str__(self) -> str:
        parts = [f'{self.module}: loaded {self.num_loaded}/{self.num_total} '
                 f'tensors from {self.source}']
        for what, keys in (('missing', self.missing),
                           ('unexpected', self.unexpected),
                           ('shape mismatch', self.mismatched)):
            if keys:
                parts.append(f'{what} {_preview(keys)}')
        return '; '.join(parts)


def _load_through_modules(module: nn.Module, state: dict
                          ) -> Tuple[List[str], List[str]]:
    """Load ``state`` (in place: hooks may replace entries) through every
    submodule's ``_load_from_state_dict``, as ``nn.Module.load_state_dict``
    and mmengine's ``load_state_dict`` do, without raising. Returns the
    missing and unexpected keys; shape mismatches are left to the caller,
    who compares ``state`` with the module afterwards."""
    metadata = getattr(state, '_metadata', None) or {}
    missing, unexpected, errors = [], [], []

    def load(mod: nn.Module, prefix: str = '') -> None:
        if is_model_wrapper(mod) or isinstance(mod, BaseTTAModel):
            mod = mod.module
        mod._load_from_state_dict(state, prefix,
                                  metadata.get(prefix[:-1], {}), True,
                                  missing, unexpected, errors)
        for name, child in mod._modules.items():
            if child is not None:
                load(child, prefix + name + '.')

    load(module)
    return missing, unexpected


def _shapes_differ(state: Mapping, own: Mapping) -> List[str]:
    return [f'{k} ({tuple(v.shape)} vs {tuple(own[k].shape)})'
            for k, v in state.items()
            if k in own and tuple(v.shape) != tuple(own[k].shape)]


def load_state_dict(module: nn.Module,
                    state_dict: Mapping[str, Tensor],
                    strict: bool = True,
                    may_miss: Sequence[str] = (),
                    source: str = 'the state dict',
                    checkpoint: Any = None,
                    logger: Union[str, logging.Logger, None] = 'current'
                    ) -> LoadReport:
    """Load weights into ``module`` and report it in one line.

    Every submodule's ``_load_from_state_dict`` runs, so modules that adapt
    incoming weights (``ContextRefinementHead`` re-initialising a classifier
    of another class count) do so. Tensors whose shapes differ are not
    loaded. BatchNorm step counters (``num_batches_tracked``) that the
    checkpoint lacks are not counted (BatchNorm fills them in).

    Args:
        module (nn.Module): Receives the weights (model wrappers are
            unwrapped).
        state_dict (Mapping[str, Tensor]): Keys as in
            ``module.state_dict()``.
        strict (bool): If True (default), the load fails unless every tensor
            of ``module`` is loaded, except those whose keys start with one
            of ``may_miss``; keys the module lacks are reported, never an
            error. If False, whatever fits is loaded and the rest reported.
        may_miss (Sequence[str]): Key prefixes that may be missing or of
            another shape under ``strict`` (e.g. ``('norm.', 'pos_embed')``).
        source (str): The checkpoint's name, for messages.
        checkpoint: The whole checkpoint the weights come from, used to say
            what model it seems to belong to.
        logger: Where the report goes (mmengine's ``print_log``).

    Returns:
        LoadReport: The counts and keys.

    Raises:
        CheckpointMismatchError: Under ``strict``: before loading anything
            if fewer than half of the module's tensors fit (the message
            names the config the checkpoint seems to belong to), or after
            loading if a tensor outside ``may_miss`` is missing or of
            another shape. Without ``strict`` a checkpoint of another model
            only gets a warning.
    """
    if is_model_wrapper(module):
        module = module.module
    name = type(module).__name__
    own = module.state_dict()
    # BatchNorm's step counters are optional (BatchNorm fills them in)
    counted = [k for k in own
               if k in state_dict or not k.endswith('num_batches_tracked')]
    fits = [k for k in counted if k in state_dict and
            tuple(state_dict[k].shape) == tuple(own[k].shape)]
    meta = checkpoint.get('meta') if isinstance(checkpoint, Mapping) else None
    meta = dict(meta) if isinstance(meta, Mapping) else {}
    if counted and len(fits) < MIN_FIT * len(counted):
        foreign = (
            f'{source} is not a checkpoint of this {name}: only '
            f'{len(fits)} of its {len(counted)} tensors fit; '
            f'{describe_checkpoint(checkpoint or state_dict, state_dict)}.')
        if strict:
            raise CheckpointMismatchError(
                foreign + ' Use the config the checkpoint was made with (or '
                'convert the checkpoint), or pass strict=False to load only '
                'the tensors that fit.')
        print_log(foreign, logger=logger, level=logging.WARNING)

    state = OrderedDict(state_dict)
    metadata = getattr(state_dict, '_metadata', None)
    if metadata is not None:
        state._metadata = metadata
    missing, unexpected = _load_through_modules(module, state)
    # after the modules' hooks: what still differs was not loaded
    mismatched = _shapes_differ(state, own)
    loaded = [k for k in counted if k in state_dict
              and tuple(state[k].shape) == tuple(own[k].shape)]
    missing = [k for k in missing if k in counted]
    report = LoadReport(
        source=source,
        module=name,
        num_loaded=len(loaded),
        num_total=len(counted),
        missing=missing,
        unexpected=unexpected,
        mismatched=mismatched,
        meta=meta)
    complete = not (missing or mismatched)
    print_log(str(report), logger=logger,
              level=logging.INFO if complete else logging.WARNING)
    may_miss = tuple(may_miss)
    fatal = [k for k in missing + mismatched if not k.startswith(may_miss)]
    if strict and fatal:
        raise CheckpointMismatchError(
            f'{name}: {len(fatal)} weights could not be loaded from {source}'
            f' ({_preview(fatal)}). Is it a checkpoint of this model, and is '
            "the prefix right (e.g. init_cfg.prefix='backbone.')? Pass "
            'strict=False to keep a partial load.')
    return report


def load_checkpoint(module: nn.Module,
                    filename: Union[str, os.PathLike],
                    map_location: Any = 'cpu',
                    strict: bool = True,
                    prefix: Optional[str] = None,
                    may_miss: Sequence[str] = (),
                    logger: Union[str, logging.Logger, None] = 'current'
                    ) -> LoadReport:
    """Read a checkpoint safely and load it into ``module``.

    :func:`read_checkpoint`, :func:`unwrap_state_dict` (``prefix``:
    only the keys under it, stripped) and :func:`load_state_dict`, which
    logs one line and refuses, under ``strict``, a checkpoint of another
    model with an error that names the config it seems to belong to.

    Args:
        module (nn.Module): Receives the weights.
        filename (str | PathLike): Local path, http(s) URL or another
            ``mmengine.fileio`` backend (``s3://...``).
        map_location: As for ``torch.load``. Defaults to ``'cpu'``.
        strict (bool): See :func:`load_state_dict`. Defaults to True.
        prefix (str, optional): Load only the keys under this prefix, e.g.
            ``'backbone.'`` for a backbone from a whole model.
        may_miss (Sequence[str]): See :func:`load_state_dict`.
        logger: Where the report goes.

    Returns:
        LoadReport: Counts, keys and the checkpoint's ``meta``.
    """
    source = _name(os.fspath(filename))
    checkpoint = read_checkpoint(filename, map_location)
    state = unwrap_state_dict(checkpoint, prefix, source=source)
    return load_state_dict(module, state, strict=strict, may_miss=may_miss,
                           source=source, checkpoint=checkpoint,
                           logger=logger)
