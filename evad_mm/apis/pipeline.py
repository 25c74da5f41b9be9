"""The part of a config's test pipeline that inference runs itself.

At test time mmaction2's ``SampleAVAFrames`` picks a clip around each
keyframe and a ``*Decode`` transform reads it; at inference the frames are
already in memory, so :func:`inference_pipeline` returns the clip geometry
and the transforms after decoding (``Resize``, ``FormatShape``,
``PackActionInputs``, ...).
"""
import copy
from typing import List, Optional, Tuple

from mmengine.config import Config

__all__ = ['AVA_FPS', 'inference_pipeline', 'training_fps']

# AVADataset's default frame rate (AVA's rawframes are extracted at 30 fps).
AVA_FPS = 30.0


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


def inference_pipeline(cfg: Config,
                       short_side: Optional[int] = None,
                       size: Optional[Tuple[int, int]] = None
                       ) -> Tuple[int, int, List[dict]]:
    """The clip geometry and the transforms after decoding.

    Args:
        cfg (Config): A config with a test pipeline holding
            ``SampleAVAFrames``.
        short_side (int, optional): Resize frames to this short side
            instead of the pipeline's ``Resize`` (one is added if there is
            none).
        size (tuple[int, int], optional): Resize frames to exactly (H, W)
            instead (e.g. the fixed input of an exported model).

    Returns:
        tuple: ``clip_len`` and ``frame_interval`` of ``SampleAVAFrames``,
        and the transform configs after decoding (copies).
    """
    pipeline = copy.deepcopy([dict(t) for t in _find_pipeline(cfg)])
    sample = [t for t in pipeline if _type_name(t) == 'SampleAVAFrames']
    if not sample:
        raise ValueError(
            f'{cfg.filename or "The config"}\'s test pipeline has no '
            f'SampleAVAFrames: {[_type_name(t) for t in pipeline]}; '
            'inference needs its clip_len and frame_interval.')
    clip_len = int(sample[0]['clip_len'])
    frame_interval = int(sample[0].get('frame_interval', 2))
    kept = [
        t for t in pipeline if _type_name(t) != 'SampleAVAFrames'
        and not _type_name(t).endswith(('Decode', 'Init'))
    ]
    if short_side is not None and size is not None:
        raise ValueError(f'short_side={short_side} and size={size}: give '
                         'one of them')
    if short_side is not None or size is not None:
        resize = dict(scale=(-1, int(short_side)), keep_ratio=True) \
            if size is None else dict(scale=(int(size[1]), int(size[0])),
                                      keep_ratio=False)
        resizes = [t for t in kept if _type_name(t) == 'Resize']
        for t in resizes:
            t.update(resize)
        if not resizes:
            kept.insert(0, dict(type='Resize', **resize))
    return clip_len, frame_interval, kept


def training_fps(cfg: Config) -> float:
    """The frame rate of the videos the config's clips are sampled from:
    a top-level ``video_fps`` when the dataset's ``fps`` counts something
    else (frame-numbered timestamps, ``fps=1``), else the dataset's, else
    AVA's 30."""
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
