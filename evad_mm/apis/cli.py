"""Command-line options shared by the demos (``tools/demo.py``,
``tools/webcam_demo.py``): the model, what is drawn, and how clips are
taken, turned into an :class:`~evad_mm.apis.EVADInferencer`."""
import argparse
import os.path as osp
import sys
from typing import Optional, Sequence

from .inference import is_exported_model

__all__ = [
    'MODEL_HELP', 'add_inference_args', 'require_positive', 'check_model',
    'check_inputs',
    'build_inferencer', 'print_error', 'cfg_options_dict'
]

MODEL_HELP = 'EVAD config file, or an exported MODEL.onnx (no checkpoint)'


def add_inference_args(parser: argparse.ArgumentParser) -> None:
    """Options of the model, the drawing and the clips: ``--device``,
    ``--label-map``, ``--score-thr``, ``--actor-thr``, ``--max-labels``,
    ``--short-side``, ``--frame-interval`` and ``--cfg-options``."""
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    parser.add_argument(
        '--label-map', default=None,
        help='class names: mmaction2 label map (`id: name` lines) or '
        'pbtxt; default: the config\'s `classes`, else class_<id>')
    parser.add_argument('--score-thr', type=float, default=0.4,
                        help='action score threshold for drawn labels')
    parser.add_argument(
        '--actor-thr', type=float, default=None,
        help='draw actors whose person score reaches this (default: the '
        "config's model.roi_head.test_cfg.score_thr; the model itself keeps "
        'all its boxes when none reaches it)')
    parser.add_argument('--max-labels', type=int, default=3,
                        help='at most this many labels per actor')
    parser.add_argument(
        '--short-side', type=int, default=None,
        help='resize frames to this short side for the model (default: '
        'the config\'s test Resize)')
    parser.add_argument(
        '--frame-interval', type=int, default=None,
        help='frames between clip frames (default: the config\'s '
        'SampleAVAFrames)')
    parser.add_argument(
        '--cfg-options', nargs='+', default=None, metavar='KEY=VALUE',
        help='config overrides, e.g. model.backbone.keep_rate=0.6 (not for '
        'an exported model)')


def require_positive(parser: argparse.ArgumentParser,
                     args: argparse.Namespace, names: Sequence[str]) -> None:
    """Exit with a usage error naming the first option of ``names`` below
    1."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1')


def check_inputs(video: str, config: str,
                 checkpoint: Optional[str]) -> Optional[str]:
    """What is wrong with a video file and the model arguments (before
    anything heavy is imported), or None."""
    if not osp.exists(video):
        return f'video file not found: {video}'
    return check_model(config, checkpoint)


def check_model(config: str, checkpoint: Optional[str]) -> Optional[str]:
    """What is wrong with the model arguments (before anything heavy is
    imported), or None."""
    exported = is_exported_model(config)
    if not osp.isfile(config):
        what = 'exported model' if exported else 'config file'
        return f'{what} not found: {config}'
    if exported and checkpoint is not None:
        return (f'{config} is an exported model and holds its weights: '
                f'drop the checkpoint {checkpoint}')
    return None


def cfg_options_dict(options: Optional[Sequence[str]]) -> Optional[dict]:
    """``--cfg-options`` ``KEY=VALUE`` strings as mmengine's ``DictAction``
    parses them, or None for none."""
    if not options:
        return None
    from mmengine.config import DictAction
    namespace = argparse.Namespace()
    DictAction(option_strings=[], dest='cfg')(None, namespace, options)
    return namespace.cfg


def build_inferencer(args: argparse.Namespace, **kwargs):
    """The :class:`~evad_mm.apis.EVADInferencer` of parsed demo options
    (``config``, ``checkpoint`` and :func:`add_inference_args`' options);
    ``kwargs`` go to it too."""
    from .inferencer import EVADInferencer
    return EVADInferencer(
        args.config,
        args.checkpoint,
        args.device,
        cfg_options=cfg_options_dict(args.cfg_options),
        label_map=args.label_map,
        score_thr=args.score_thr,
        actor_thr=args.actor_thr,
        max_labels=args.max_labels,
        short_side=args.short_side,
        frame_interval=args.frame_interval,
        **kwargs)


def print_error(message: str) -> int:
    """Print ``error: message`` on stderr; returns the exit status 1."""
    print(f'error: {message}', file=sys.stderr)
    return 1
