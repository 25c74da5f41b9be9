"""Building an EVAD detector for inference: :func:`init_detector`.

From a config (and checkpoint) it builds the PyTorch model with no
pretrained-weight download; from an exported ``.onnx`` file it returns
:class:`evad_mm.deployment.ONNXDetector`, which runs like it.
:class:`~evad_mm.apis.EVADInferencer` and the demos use either.

Example::

    from evad_mm.apis import init_detector
    model = init_detector('configs/evad_toy_ava.py', 'best.pth')
"""
import copy
import logging
import os
import os.path as osp
import warnings
from pathlib import Path
from typing import Any, List, Optional, Union

import torch
from mmengine.config import Config
from mmengine.logging import MMLogger, print_log
from mmengine.registry import DefaultScope

from evad_mm.utils.checkpoint import load_checkpoint

__all__ = ['init_detector', 'is_exported_model', 'RandomWeightsWarning']


class RandomWeightsWarning(UserWarning):
    """:func:`init_detector` built a model without loading a checkpoint."""


def _is_pretrained_init(init_cfg) -> bool:
    return isinstance(init_cfg, dict) and str(init_cfg.get(
        'type', '')).split('.')[-1] in ('Pretrained', 'PretrainedInit')


def _disable_pretrained(node, path='model') -> List[str]:
    """Drop ``init_cfg=dict(type='Pretrained', ...)`` entries and
    ``pretrained=...`` paths anywhere in a model config (in place), so that
    building or initialising it never downloads weights. Returns what was
    disabled."""
    disabled = []
    if isinstance(node, dict):
        init_cfg = node.get('init_cfg')
        if _is_pretrained_init(init_cfg):
            node['init_cfg'] = None
            disabled.append(f'{path}.init_cfg')
        elif isinstance(init_cfg, (list, tuple)) and any(
                _is_pretrained_init(c) for c in init_cfg):
            kept = [c for c in init_cfg if not _is_pretrained_init(c)]
            node['init_cfg'] = kept or None
            disabled.append(f'{path}.init_cfg')
        if isinstance(node.get('pretrained'), str):
            node['pretrained'] = None
            disabled.append(f'{path}.pretrained')
        for key, value in node.items():
            if key != 'init_cfg':
                disabled += _disable_pretrained(value, f'{path}.{key}')
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            disabled += _disable_pretrained(value, f'{path}[{i}]')
    return disabled


def is_exported_model(path: Any) -> bool:
    """Whether ``path`` names an exported model (an ``.onnx`` file)."""
    return isinstance(path, (str, Path)) and \
        os.fspath(path).lower().endswith('.onnx')


def _init_exported(path: str, checkpoint: Optional[str], device,
                   cfg_options: Optional[dict]):
    """:class:`evad_mm.deployment.ONNXDetector` of an ``.onnx`` file."""
    if checkpoint is not None:
        raise ValueError(f'{path} is an exported model and holds its '
                         f'weights: drop the checkpoint ({checkpoint})')
    if cfg_options:
        raise ValueError(f'{path} is an exported model, fixed at export: '
                         f'cfg_options ({", ".join(cfg_options)}) cannot '
                         'change it; export again with them')
    if not osp.isfile(path):
        raise FileNotFoundError(f'Exported model not found: {path}')
    try:
        from evad_mm.deployment import ONNXDetector
    except ImportError as err:
        raise ImportError(
            f'Running the exported model {path} needs evad_mm.deployment '
            f'and onnxruntime ({err}); install onnxruntime '
            '(pip install onnxruntime), or pass the config and checkpoint '
            'instead') from err
    return ONNXDetector(path, device=str(device))


def init_detector(config: Union[str, Path, Config],
                  checkpoint: Optional[str] = None,
                  device: Union[str, torch.device] = 'cpu',
                  cfg_options: Optional[dict] = None,
                  strict: bool = True) -> Any:
    """Build an EVAD detector ready for inference.

    Pretrained-weight downloads in the config (``init_cfg=dict(type=
    'Pretrained')``, ``pretrained=``) are disabled; the checkpoint, if any,
    is loaded with :func:`evad_mm.utils.checkpoint.load_checkpoint`
    (``torch.load(weights_only=True)``, one log line of what was loaded).

    Args:
        config (str | Path | Config): Config file or object (not modified),
            or an exported ``MODEL.onnx`` (then without checkpoint and
            cfg_options).
        checkpoint (str, optional): Checkpoint path or URL. Without one the
            model keeps random weights, and a :class:`RandomWeightsWarning`
            is issued (and logged).
        device (str | torch.device): Defaults to ``'cpu'``.
        cfg_options (dict, optional): Overrides merged into the config,
            e.g. ``{'model.backbone.keep_rate': 0.6}``.
        strict (bool): Refuse a checkpoint that does not fill the model
            (a checkpoint of another model, missing or mis-shaped tensors;
            a classifier of another class count is re-initialised, see
            ``ContextRefinementHead``). False loads whatever fits. Defaults
            to True.

    Returns:
        nn.Module | ONNXDetector: The detector in eval mode with its config
        in ``.cfg``; for an ``.onnx`` file an
        :class:`evad_mm.deployment.ONNXDetector` (same ``test_step``).

    Raises:
        ImportError: An ``.onnx`` file, and the ONNX runtime is missing.
        CheckpointMismatchError: Under ``strict``, a checkpoint that does
            not fit the model.
    """
    if is_exported_model(config):
        return _init_exported(os.fspath(config), checkpoint, device,
                              cfg_options)
    if isinstance(config, (str, Path)):
        config = os.fspath(config)
        if not osp.isfile(config):
            raise FileNotFoundError(f'Config not found: {config}')
        cfg = Config.fromfile(config)
    elif isinstance(config, Config):
        cfg = copy.deepcopy(config)
    else:
        raise TypeError('config must be a file name or an mmengine Config, '
                        f'not {type(config).__name__}')
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    import evad_mm  # noqa: F401  (shims + registration, for Config objects)
    from mmaction.registry import MODELS
    disabled = _disable_pretrained(cfg.model)
    if disabled:
        print_log(f'init_detector: pretrained weights disabled in '
                  f'{", ".join(disabled)}', logger='current',
                  level=logging.INFO)
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', 'mmaction')):
        model = MODELS.build(cfg.model)
        if checkpoint is None:
            # the modules' own initialisation (no downloads: disabled
            # above), e.g. Sparse R-CNN's whole-image initial proposals,
            # without which random boxes can be degenerate. Quiet: mmengine
            # logs every parameter's initialisation at INFO.
            logger = MMLogger.get_current_instance()
            level = logger.level
            logger.setLevel(logging.WARNING)
            try:
                model.init_weights()
            finally:
                logger.setLevel(level)
    if checkpoint is not None:
        report = load_checkpoint(model, checkpoint, strict=strict)
        if report.meta.get('dataset_meta'):
            model.dataset_meta = report.meta['dataset_meta']
    else:
        message = (f'init_detector: no checkpoint given for '
                   f'{cfg.filename or "the config"}: running with random '
                   'weights. Boxes and action scores are meaningless; pass '
                   'a trained checkpoint.')
        warnings.warn(message, RandomWeightsWarning, stacklevel=2)
        print_log(message, logger='current', level=logging.WARNING)
    model.cfg = cfg
    model.to(device)
    model.eval()
    return model
