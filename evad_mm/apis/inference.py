"""Inference with EVAD on a video: no person detector, no proposals.

:func:`init_detector` builds a detector from a config (and checkpoint);
:func:`detect_video` samples a clip around each keyframe exactly as the
config's test pipeline (``SampleAVAFrames``) does at test time, runs the
rest of that pipeline (``Resize``, ``FormatShape``, ``PackActionInputs``)
and the model, and returns one :class:`KeyframeResult` per keyframe: every
actor EVAD finds in the keyframe, with its action scores.

Example::

    from evad_mm.apis import init_detector, detect_video
    model = init_detector('configs/evad_toy_ava.py', 'best.pth')
    for r in detect_video(model, 'video.mp4', score_thr=0.4):
        print(r.frame_index, r.time, r.bboxes, r.labels)
"""
import copy
import logging
import os
import os.path as osp
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.logging import MMLogger, print_log
from mmengine.registry import DefaultScope

from .labels import _num_classes, get_label_names, load_label_map
from .video import (VideoFrames, VideoReadError, clip_indices,
                    default_keyframes, load_video)

__all__ = [
    'init_detector', 'detect_video', 'inference_pipeline', 'load_video',
    'load_label_map', 'get_label_names', 'default_keyframes', 'clip_indices',
    'progress_bar',
    'KeyframeResult', 'VideoFrames', 'VideoReadError', 'RandomWeightsWarning'
]

# AVADataset's default frame rate (AVA's rawframes are extracted at 30 fps).
AVA_FPS = 30.0
# Pixels (T * H * W) per forward pass when batching keyframes automatically:
# 8 toy clips (8 x 128 x 171) fit, one ViT-B clip (16 x 288 x 384) is alone.
_AUTO_BATCH_PIXELS = 2**21
_MAX_AUTO_BATCH = 8


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


def _load_weights(model: torch.nn.Module, checkpoint: str) -> dict:
    """Load a checkpoint with ``torch.load(weights_only=True)`` (and the
    mmengine allow-list of :mod:`evad_mm.compat`) into ``model``."""
    from mmengine.fileio import get_local_path
    from mmengine.runner.checkpoint import _load_checkpoint_to_model

    from evad_mm.compat import safe_torch_load
    checkpoint = os.fspath(checkpoint)
    if '://' not in checkpoint and not osp.isfile(checkpoint):
        raise FileNotFoundError(f'Checkpoint not found: {checkpoint}')
    with get_local_path(checkpoint) as local:  # downloads URLs
        ckpt = safe_torch_load(local, map_location='cpu')
    if not isinstance(ckpt, dict):
        raise TypeError(f'{checkpoint} holds a {type(ckpt).__name__}, not a '
                        'state dict or an mmengine checkpoint')
    _load_checkpoint_to_model(model, ckpt, strict=False, logger='current')
    return ckpt


def init_detector(config: Union[str, Path, Config],
                  checkpoint: Optional[str] = None,
                  device: Union[str, torch.device] = 'cpu',
                  cfg_options: Optional[dict] = None) -> torch.nn.Module:
    """Build an EVAD detector ready for inference.

    Pretrained-weight downloads in the config (``init_cfg=dict(type=
    'Pretrained')``, ``pretrained=``) are disabled; the checkpoint, if any,
    is loaded with ``torch.load(weights_only=True)``.

    Args:
        config (str | Path | Config): Config file or object (not modified).
        checkpoint (str, optional): Checkpoint path or URL. Without one the
            model keeps random weights, and a :class:`RandomWeightsWarning`
            is issued (and logged).
        device (str | torch.device): Defaults to ``'cpu'``.
        cfg_options (dict, optional): Overrides merged into the config,
            e.g. ``{'model.backbone.keep_rate': 0.6}``.

    Returns:
        nn.Module: The detector in eval mode with its config in ``.cfg``.
    """
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
        ckpt = _load_weights(model, checkpoint)
        meta = ckpt.get('meta') if isinstance(ckpt.get('meta'), dict) else {}
        if meta.get('dataset_meta'):
            model.dataset_meta = meta['dataset_meta']
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


# ---------------------------------------------------------------- detect ---


def progress_bar(total: int, desc: str, unit: str):
    """A tqdm bar on stderr, or mmengine's ``ProgressBar`` without tqdm.
    Both have ``update(n)``; only tqdm has ``close()``."""
    try:
        from tqdm import tqdm
    except ImportError:
        from mmengine.utils import ProgressBar
        return ProgressBar(total)
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr)


@dataclass
class KeyframeResult:
    """The actors EVAD found in one keyframe.

    Attributes:
        frame_index (int): The keyframe (0-based).
        time (float): Its time in seconds, ``frame_index / fps``.
        bboxes (np.ndarray): (n, 4) x1, y1, x2, y2 in pixels of the
            original frame.
        bboxes_normalized (np.ndarray): (n, 4) the same in [0, 1].
        scores (np.ndarray): (n, num_classes - 1) action probabilities;
            column j is class id j + 1 (mmaction2's unused column 0 is
            dropped).
        actor_scores (np.ndarray): (n, ) person scores.
        labels (list[list[str]]): Per box, the names of the classes scoring
            at least ``score_thr``, best first.
        label_ids (list[list[int]]): Their class ids.
        label_scores (list[list[float]]): Their scores.
        image_shape (tuple): (H, W) of the original frame.
    """
    frame_index: int
    time: float
    bboxes: np.ndarray
    bboxes_normalized: np.ndarray
    scores: np.ndarray
    actor_scores: np.ndarray
    labels: List[List[str]] = field(default_factory=list)
    label_ids: List[List[int]] = field(default_factory=list)
    label_scores: List[List[float]] = field(default_factory=list)
    image_shape: Tuple[int, int] = (0, 0)

    def __len__(self) -> int:
        return len(self.bboxes)

    def to_dict(self) -> dict:
        """Plain lists and numbers (JSON-serialisable)."""
        out = {}
        for key, value in self.__dict__.items():
            out[key] = value.tolist() if isinstance(value, np.ndarray) else \
                (list(value) if isinstance(value, tuple) else value)
        return out


def _type_name(transform: dict) -> str:
    t = transform.get('type', '')
    return (t if isinstance(t, str) else t.__name__).split('.')[-1]


def _find_pipeline(cfg: Config) -> list:
    """The test pipeline: the test (else val) dataloader's dataset's
    (wrapped datasets too), else ``test_pipeline`` / ``val_pipeline``."""
    for loader in ('test_dataloader', 'val_dataloader'):
        dataset = (cfg.get(loader) or {}).get('dataset')
        while isinstance(dataset, dict):
            if dataset.get('pipeline'):
                return dataset['pipeline']
            dataset = dataset.get('dataset')
    for name in ('test_pipeline', 'val_pipeline'):
        if cfg.get(name):
            return cfg[name]
    raise ValueError(f'{cfg.filename or "The config"} has no test pipeline '
                     '(test_dataloader.dataset.pipeline or test_pipeline)')


def inference_pipeline(cfg: Config, short_side: Optional[int] = None
                       ) -> Tuple[int, int, List[dict]]:
    """``clip_len``, ``frame_interval`` of the test pipeline's
    ``SampleAVAFrames`` and its transforms after decoding (frame sampling
    and decoding are done here), ``Resize`` to ``short_side`` if given."""
    pipeline = copy.deepcopy([dict(t) for t in _find_pipeline(cfg)])
    sample = [t for t in pipeline if _type_name(t) == 'SampleAVAFrames']
    if not sample:
        raise ValueError(
            f'{cfg.filename or "The config"}\'s test pipeline has no '
            f'SampleAVAFrames: {[_type_name(t) for t in pipeline]}; '
            'detect_video needs its clip_len and frame_interval.')
    clip_len = int(sample[0]['clip_len'])
    frame_interval = int(sample[0].get('frame_interval', 2))
    kept = [
        t for t in pipeline if _type_name(t) != 'SampleAVAFrames'
        and not _type_name(t).endswith(('Decode', 'Init'))
    ]
    if short_side is not None:
        resizes = [t for t in kept if _type_name(t) == 'Resize']
        for t in resizes:
            t.update(scale=(-1, int(short_side)), keep_ratio=True)
        if not resizes:
            kept.insert(
                0, dict(type='Resize', scale=(-1, int(short_side)),
                        keep_ratio=True))
    return clip_len, frame_interval, kept


def _training_fps(cfg: Config) -> float:
    """The frame rate of the videos the config's clips are sampled from:
    a top-level ``video_fps`` when the dataset's ``fps`` counts something
    else (frame-numbered timestamps, ``fps=1``), else the dataset's."""
    if cfg.get('video_fps') is not None:
        if not isinstance(cfg.video_fps, (int, float)) or cfg.video_fps <= 0:
            raise ValueError(
                f'video_fps={cfg.video_fps!r} in the config must be the '
                'frame rate of the videos (> 0), e.g. video_fps = 25')
        return float(cfg.video_fps)
    for loader in ('test_dataloader', 'val_dataloader'):
        dataset = (cfg.get(loader) or {}).get('dataset')
        if isinstance(dataset, dict) and dataset.get('fps'):
            return float(dataset['fps'])
    return float(cfg.get('fps') or AVA_FPS)


def _to_result(sample, keyframe: int, fps: float, image_shape, num: int,
               names: Dict[int, str], score_thr: float) -> KeyframeResult:
    pred = sample.pred_instances
    h, w = image_shape
    norm = pred.bboxes.detach().float().cpu().numpy().reshape(-1, 4)
    scores = pred.scores.detach().float().cpu().numpy().reshape(len(norm), -1)
    if scores.shape[1] == num + 1:
        scores = scores[:, 1:]  # mmaction2's unused column 0
    actor = getattr(pred, 'actor_scores', None)
    actor = (np.ones(len(norm), np.float32) if actor is None else
             actor.detach().float().cpu().numpy().reshape(-1))
    named = np.array(sorted(names)) - 1  # columns with a name
    labels, label_ids, label_scores = [], [], []
    for row in scores:
        order = named[np.argsort(-row[named], kind='stable')]
        order = order[row[order] >= score_thr]
        labels.append([names[j + 1] for j in order])
        label_ids.append([int(j + 1) for j in order])
        label_scores.append([float(row[j]) for j in order])
    return KeyframeResult(
        frame_index=int(keyframe),
        time=float(keyframe) / fps,
        bboxes=(norm * np.array([w, h, w, h], np.float32)).astype(np.float32),
        bboxes_normalized=norm.astype(np.float32),
        scores=scores.astype(np.float32),
        actor_scores=actor.astype(np.float32),
        labels=labels,
        label_ids=label_ids,
        label_scores=label_scores,
        image_shape=(int(h), int(w)))


def detect_video(model: torch.nn.Module,
                 video,
                 keyframes: Optional[Sequence[int]] = None,
                 predict_stepsize: int = 8,
                 score_thr: float = 0.0,
                 short_side: Optional[int] = None,
                 label_map=None,
                 fps: Optional[float] = None,
                 *,
                 frame_interval: Optional[int] = None,
                 batch_size: Optional[int] = None,
                 progress: bool = False) -> List[KeyframeResult]:
    """Detect the actors of a video's keyframes and score their actions.

    Each keyframe gets the clip the config's test ``SampleAVAFrames`` gives
    (``clip_len`` frames, ``frame_interval`` apart, centred on it; indices
    clamped at the video's ends), resized by the test pipeline's ``Resize``
    (short side ``short_side`` if given), then the model runs on it.

    Args:
        model (nn.Module): From :func:`init_detector` (needs ``model.cfg``).
        video: A video file, a (T, H, W, 3) uint8 RGB array, a list of
            (H, W, 3) frames or a :class:`VideoFrames`.
        keyframes (list[int], optional): 0-based frame indices. Default:
            :func:`default_keyframes` of the whole video.
        predict_stepsize (int): Frames between default keyframes.
        score_thr (float): Action score threshold for ``labels``.
        short_side (int, optional): Resize frames to this short side instead
            of the config's.
        label_map: Class names (see :func:`get_label_names`).
        fps (float, optional): The video's frame rate, for ``time``; by
            default the file's, for frames in memory the config's dataset
            fps (AVA's 30 if none).
        frame_interval (int, optional): Override the config's (e.g. to keep
            a clip's duration on a video of another frame rate).
        batch_size (int, optional): Keyframes per forward pass; by default
            as many (up to 8) as fit in about 2M input pixels.
        progress (bool): Show a progress bar.

    Returns:
        list[KeyframeResult]: One per keyframe, in the order of
        ``keyframes``.
    """
    cfg = model.cfg
    source = load_video(video, fps=fps)
    num_frames = len(source)
    clip_fps = source.fps or _training_fps(cfg)
    names = get_label_names(model, label_map)
    num = _num_classes(model) - 1
    clip_len, cfg_interval, transforms = inference_pipeline(cfg, short_side)
    interval = int(frame_interval or cfg_interval)
    if frame_interval is None and source.fps:
        trained_fps = _training_fps(cfg)
        if abs(source.fps / trained_fps - 1) > 0.2:
            print_log(
                f'{source.name} is at {source.fps:.3g} fps and the model '
                f'samples clips at {trained_fps:.3g} fps: a clip spans '
                f'{clip_len * interval / source.fps:.2f} s instead of '
                f'{clip_len * interval / trained_fps:.2f} s. frame_interval='
                f'{max(1, round(interval * source.fps / trained_fps))} keeps '
                'the trained duration.', logger='current',
                level=logging.WARNING)
    if keyframes is None:
        keyframes = default_keyframes(num_frames, predict_stepsize)
    keyframes = [int(k) for k in keyframes]
    bad = [k for k in keyframes if not 0 <= k < num_frames]
    if bad:
        raise ValueError(f'Keyframes {bad} are outside the video '
                         f'({num_frames} frames)')
    if not keyframes:
        return []

    scope = cfg.get('default_scope', 'mmaction')
    with DefaultScope.overwrite_default_scope(scope):
        pipeline = Compose(transforms)
    image_shape = (source.height, source.width)

    def pack(frames, keyframe, inds):
        return pipeline(
            dict(
                imgs=list(frames),
                img_shape=image_shape,
                original_shape=image_shape,
                modality='RGB',
                num_clips=1,
                clip_len=len(frames),
                frame_interval=interval,
                frame_inds=np.asarray(inds),
                start_index=0,
                total_frames=num_frames,
                video_id=osp.basename(source.name),
                timestamp=keyframe,
                img_key=f'{osp.basename(source.name)},{keyframe}'))

    if batch_size is None:
        probe = pack(np.zeros((1, *image_shape, 3), np.uint8), 0, [0])
        pixels = clip_len * int(np.prod(probe['inputs'].shape[-2:]))
        batch_size = max(1, min(_MAX_AUTO_BATCH,
                                _AUTO_BATCH_PIXELS // max(pixels, 1)))

    results = []
    bar = progress_bar(len(keyframes), 'detect', 'keyframe') \
        if progress else None
    try:
        for b in range(0, len(keyframes), batch_size):
            chunk = keyframes[b:b + batch_size]
            clips = [clip_indices(k, clip_len, interval, num_frames)
                     for k in chunk]
            needed = sorted(set(np.concatenate(clips).tolist()))
            frames = source.get_batch(needed)
            where = {idx: i for i, idx in enumerate(needed)}
            data = pseudo_collate([
                pack(frames[[where[i] for i in inds.tolist()]], k, inds)
                for k, inds in zip(chunk, clips)
            ])
            with torch.no_grad():
                preds = model.test_step(data)
            results += [
                _to_result(p, k, clip_fps, image_shape, num, names, score_thr)
                for k, p in zip(chunk, preds)
            ]
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None and hasattr(bar, 'close'):
            bar.close()
    return results
