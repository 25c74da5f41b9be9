"""What the scripts of tools/analysis/ share: the detector they measure, its
default input shape and their common command-line options."""
import argparse
import warnings
from typing import Any, List, Optional, Sequence, Union

from torch import nn


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``config``, ``--shape``, ``--num-actors`` and ``--json``."""
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--shape',
        type=int,
        nargs=3,
        metavar=('T', 'H', 'W'),
        help='input clip size (default: backbone num_frames x img_size x '
        'img_size)')
    parser.add_argument(
        '--num-actors',
        type=int,
        default=None,
        help='give the action head exactly the N highest-scoring boxes per '
        'clip (roi_head.test_cfg.num_actors; replaces the config\'s '
        'score_thr and nms)')
    parser.add_argument(
        '--json', action='store_true', help='print one JSON line last')


def build_detector(config: str,
                   keep_rate: Union[None, float, Sequence[float]] = None,
                   fused_attn: Optional[bool] = None,
                   num_actors: Optional[int] = None,
                   device: str = 'cpu') -> nn.Module:
    """The EVAD model of ``config`` in eval mode, with random weights (its
    own initialisation, no pretrained download): FLOPs, speed and memory
    depend on shapes only.

    Args:
        config (str): Config file.
        keep_rate (float | Sequence[float], optional): Backbone keep rate(s)
            (``EVAD.set_keep_rate``); None keeps the config's.
        fused_attn (bool, optional): ``EVAD.set_fused_attn``; None keeps
            the config's attention.
        num_actors (int, optional): Sets ``roi_head.test_cfg.num_actors``
            (and drops the config's ``nms``, which a fixed count excludes);
            None keeps the config's rule.
        device (str): Defaults to 'cpu'.
    """
    from evad_mm.apis import RandomWeightsWarning, init_detector
    cfg_options = None
    if num_actors is not None:
        cfg_options = {
            'model.roi_head.test_cfg.num_actors': num_actors,
            'model.roi_head.test_cfg.nms': None
        }
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RandomWeightsWarning)  # intended
        model = init_detector(config, device=device, cfg_options=cfg_options)
    if keep_rate is not None:
        model.set_keep_rate(keep_rate)
    if fused_attn is not None:
        model.set_fused_attn(fused_attn)
    return model


def default_shape(model: nn.Module) -> List[int]:
    """[T, H, W] the backbone was built for: ``num_frames`` and
    ``img_size`` (a ViT's patch grid times its patch size), 16 x 224 x 224
    where it does not say."""
    backbone = model.backbone
    size = getattr(backbone, 'img_size', None)
    if size is None and hasattr(backbone, 'grid_size'):
        size = backbone.grid_size[0] * backbone.patch_size
    if isinstance(size, (tuple, list)):
        size = size[0]
    size = int(size or 224)
    return [int(getattr(backbone, 'num_frames', 16)), size, size]


def format_value(x: Any, spec: str) -> str:
    """``format(x, spec)``, or '-' for a value that was not measured."""
    return '-' if x is None else format(x, spec)


def format_columns(rows: Sequence[Sequence[str]]) -> str:
    """Right-aligned text table; the first row is the header, underlined."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ['  '.join(c.rjust(w) for c, w in zip(row, widths))
             for row in rows]
    lines.insert(1, '-' * len(lines[0]))
    return '\n'.join(lines)
