"""EVAD inference on videos, arrays of frames and streams of clip windows.

:class:`EVADInferencer` follows mmengine's ``BaseInferencer``: it is built
once (model, label names, test pipeline, visualizer) and each call runs
:meth:`~EVADInferencer.preprocess` (the clip the config's test
``SampleAVAFrames`` takes around each keyframe, then the rest of the test
pipeline and ``pseudo_collate``), :meth:`~EVADInferencer.forward`
(``model.test_step``), :meth:`~EVADInferencer.visualize` and
:meth:`~EVADInferencer.postprocess` (one :class:`KeyframeResult` per
keyframe). :func:`detect_video` is the one-call form.

Example::

    from evad_mm.apis import EVADInferencer
    inferencer = EVADInferencer('configs/evad_toy_ava.py', 'best.pth',
                                score_thr=0.4)
    for r in inferencer('video.mp4', predict_stepsize=8)['predictions']:
        print(r.frame_index, r.time, r.bboxes, r.labels)
    # a live stream: one window of inferencer.window_len frames at a time
    result = inferencer.predict_window(frames)
"""
import logging
import os.path as osp
from datetime import datetime
from pathlib import Path
from typing import (Any, Dict, Iterable, Iterator, List, Optional, Sequence,
                    Tuple, Union)

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.fileio import dump
from mmengine.infer import BaseInferencer
from mmengine.logging import print_log
from mmengine.registry import DefaultScope

from .inference import init_detector
from .keyframe_result import KeyframeResult
from .labels import get_label_names, num_classes
from .pipeline import inference_pipeline, training_fps
from .video import VideoFrames, clip_indices, default_keyframes, load_video

__all__ = [
    'EVADInferencer', 'detect_video', 'default_actor_thr', 'progress_bar'
]

# Pixels (T * H * W) per forward pass when batching keyframes automatically:
# 8 toy clips (8 x 128 x 171) fit, one ViT-B clip (16 x 288 x 384) is alone.
_AUTO_BATCH_PIXELS = 2**21
_MAX_AUTO_BATCH = 8

VideoType = Union[str, Path, np.ndarray, Sequence[np.ndarray], VideoFrames]


def default_actor_thr(cfg: Config) -> float:
    """The person score from which an actor is drawn: the config's
    ``model.roi_head.test_cfg.score_thr`` (the model keeps all its boxes
    when none reaches it), else 0."""
    test_cfg = (cfg.get('model') or {}).get('roi_head', {}).get('test_cfg')
    return float((test_cfg or {}).get('score_thr', 0.))


def _exported_frame_size(model) -> Optional[Tuple[int, int]]:
    """(H, W) of the clips an exported model takes (fixed at export), None
    for a PyTorch model."""
    shape = getattr(getattr(model, 'info', None), 'clip_shape', None)
    return None if shape is None else (int(shape[-2]), int(shape[-1]))


def progress_bar(sequence: Iterable, total: int,
                 description: str) -> Iterable:
    """``sequence`` with rich's progress bar (as ``BaseInferencer``'s) on
    stderr."""
    from rich.console import Console
    from rich.progress import track
    return track(sequence, description=description, total=total,
                 console=Console(stderr=True))


class EVADInferencer(BaseInferencer):
    """Spatio-temporal action detection with EVAD: no person detector, no
    proposals.

    Args:
        model (str | Path | Config | nn.Module | ONNXDetector): A config
            (file or object) built with :func:`init_detector`, an exported
            ``.onnx`` model, or a detector already built by
            :func:`init_detector` (used as it is).
        weights (str, optional): Checkpoint of a config (without one the
            weights are random, with a :class:`RandomWeightsWarning`).
        device (str, optional): Defaults to ``'cpu'``.
        cfg_options (dict, optional): Config overrides, e.g.
            ``{'model.backbone.keep_rate': 0.6}``.
        label_map: Class names (see :func:`get_label_names`).
        score_thr (float): Smallest action score listed in a result's
            ``labels``. Defaults to 0.
        actor_thr (float, optional): Smallest person score of a drawn
            actor; default :func:`default_actor_thr` of the config.
        max_labels (int): Labels drawn per actor. Defaults to 3.
        short_side (int, optional): Resize frames to this short side
            instead of the config's test ``Resize``. For an exported model
            frames are resized to the clip size it was exported for, and
            must have its aspect ratio.
        frame_interval (int, optional): Frames between clip frames instead
            of the config's ``SampleAVAFrames`` (e.g. to keep a clip's
            duration on a video of another frame rate).
        show_progress (bool): Show a progress bar (stderr) per call.
    """

    preprocess_kwargs: set = {'keyframes', 'predict_stepsize'}
    forward_kwargs: set = set()
    visualize_kwargs: set = {'return_vis', 'show', 'wait_time', 'vis_out_dir'}
    postprocess_kwargs: set = {'pred_out_file'}

    def __init__(self,
                 model: Union[str, Path, Config, Any],
                 weights: Optional[str] = None,
                 device: Optional[str] = None,
                 *,
                 cfg_options: Optional[dict] = None,
                 label_map=None,
                 score_thr: float = 0.,
                 actor_thr: Optional[float] = None,
                 max_labels: int = 3,
                 short_side: Optional[int] = None,
                 frame_interval: Optional[int] = None,
                 show_progress: bool = False) -> None:
        if isinstance(model, (str, Path, Config)):
            detector = init_detector(model, weights, device or 'cpu',
                                     cfg_options)
        elif weights is not None or cfg_options:
            raise ValueError(
                'weights and cfg_options apply to a config; this '
                f'{type(model).__name__} is already built: pass its config '
                'instead, or build it with them')
        elif not isinstance(getattr(model, 'cfg', None), Config):
            raise TypeError(
                'model must be a config, an .onnx file or a detector from '
                f'init_detector (with a .cfg), not {type(model).__name__}')
        else:
            detector = model
        cfg = detector.cfg
        self._built_model = detector
        self.score_thr = float(score_thr)
        self.actor_thr = default_actor_thr(cfg) if actor_thr is None \
            else float(actor_thr)
        self.max_labels = int(max_labels)
        self.label_names = get_label_names(detector, label_map)
        self.num_classes = num_classes(detector) - 1
        self._fixed_size = _exported_frame_size(detector)
        if self._fixed_size is not None and short_side is not None:
            raise ValueError(
                f'short_side={short_side}: an exported model takes frames of '
                f'{self._fixed_size[0]}x{self._fixed_size[1]} (H x W), fixed '
                'at export')
        self.clip_len, cfg_interval, self._transforms = inference_pipeline(
            cfg, short_side, self._fixed_size)
        self.frame_interval = int(frame_interval or cfg_interval)
        if self.frame_interval < 1:
            raise ValueError(
                f'frame_interval must be >= 1: {self.frame_interval}')
        self._interval_overridden = frame_interval is not None
        self._visualizer = None
        super().__init__(model=cfg, device=device or 'cpu',
                         scope=cfg.get('default_scope', 'mmaction'),
                         show_progress=show_progress)

    # ----------------------------------------------------------- building

    def _init_model(self, cfg, weights, device) -> Any:
        """The detector built in ``__init__`` (config, checkpoint and
        exported models all go through :func:`init_detector`)."""
        model, self._built_model = self._built_model, None
        return model

    def _init_pipeline(self, cfg: Config) -> Compose:
        """The test pipeline after frame sampling and decoding."""
        with DefaultScope.overwrite_default_scope(self.scope):
            return Compose(self._transforms)

    def _init_visualizer(self, cfg: Config) -> None:
        """Built at the first drawing (see :attr:`visualizer`)."""
        return None

    @property
    def visualizer(self):
        """The :class:`ActionDetectionVisualizer` of this inferencer, with
        its ``actor_thr`` and ``max_labels``."""
        if self._visualizer is None:
            from evad_mm.visualization import ActionDetectionVisualizer
            name = f'evad_inferencer_{datetime.now().timestamp()}_{id(self)}'
            self._visualizer = ActionDetectionVisualizer(
                name=name, actor_thr=self.actor_thr,
                max_labels=self.max_labels)
        return self._visualizer

    @visualizer.setter
    def visualizer(self, visualizer) -> None:
        self._visualizer = visualizer

    # -------------------------------------------------------------- calls

    @property
    def window_len(self) -> int:
        """Frames of a stream window: ``clip_len * frame_interval``."""
        return self.clip_len * self.frame_interval

    @property
    def window_keyframe(self) -> int:
        """The keyframe of a window: the frame the config's test
        ``SampleAVAFrames`` centres the window's clip on."""
        return (self.clip_len // 2) * self.frame_interval

    def __call__(self,
                 inputs: VideoType,
                 return_datasamples: bool = False,
                 batch_size: Optional[int] = None,
                 fps: Optional[float] = None,
                 **kwargs) -> dict:
        """Detect the actors of a video's keyframes and score their actions.

        Args:
            inputs: A video file, a (T, H, W, 3) uint8 RGB array, a list of
                (H, W, 3) RGB frames or a :class:`VideoFrames`.
            return_datasamples (bool): Predictions as the model's
                ``ActionDataSample`` instead of :class:`KeyframeResult`.
            batch_size (int, optional): Keyframes per forward pass; by
                default as many (up to 8) as fit in about 2M input pixels.
            fps (float, optional): The video's frame rate, for ``time``; by
                default the file's, for frames in memory the config's
                dataset fps (AVA's 30 if none).
            **kwargs: ``keyframes`` (0-based frame indices; default
                :func:`default_keyframes` of the whole video) and
                ``predict_stepsize`` (frames between default keyframes,
                default 8) for :meth:`preprocess`; ``return_vis``,
                ``show``, ``wait_time``, ``vis_out_dir`` for
                :meth:`visualize`; ``pred_out_file`` for
                :meth:`postprocess`.

        Returns:
            dict: ``predictions``, one per keyframe in the order of
            ``keyframes``, and ``visualization`` (drawn RGB keyframes, or
            None).
        """
        pre_kwargs, _, vis_kwargs, post_kwargs = self._dispatch_kwargs(
            **kwargs)
        video = load_video(inputs, fps=fps)
        self._check_frame_size(video)
        self._check_frame_rate(video)
        keyframes = self._keyframes(video, **pre_kwargs)
        if keyframes and batch_size is None:
            batch_size = self._auto_batch_size(video)
        batches = self.preprocess(video, batch_size, keyframes=keyframes)
        if self.show_progress and keyframes:
            num_batches = -(-len(keyframes) // batch_size)
            batches = progress_bar(batches, num_batches, 'Inference')
        preds = []
        for data in batches:
            preds.extend(self.forward(data))
        visualization = self.visualize(video, preds, **vis_kwargs)
        return self.postprocess(preds, visualization, return_datasamples,
                                **post_kwargs)

    def predict_window(self, frames: Sequence[np.ndarray]) -> KeyframeResult:
        """The actors of one stream window's keyframe.

        Args:
            frames: The last :attr:`window_len` (H, W, 3) RGB frames of a
                stream, oldest first (a list, deque or (T, H, W, 3) array).

        Returns:
            KeyframeResult: Of frame :attr:`window_keyframe` of the window.
        """
        frames = list(frames)
        if len(frames) != self.window_len:
            raise ValueError(
                f'a window of {len(frames)} frames: the model takes '
                f'{self.window_len} (clip_len {self.clip_len} x '
                f'frame_interval {self.frame_interval})')
        return self(frames, keyframes=[self.window_keyframe],
                    batch_size=1)['predictions'][0]

    # ---------------------------------------------------------- the steps

    def _keyframes(self,
                   video: VideoFrames,
                   keyframes: Optional[Sequence[int]] = None,
                   predict_stepsize: int = 8) -> List[int]:
        if keyframes is None:
            return default_keyframes(len(video), predict_stepsize)
        keyframes = [int(k) for k in keyframes]
        bad = [k for k in keyframes if not 0 <= k < len(video)]
        if bad:
            raise ValueError(f'Keyframes {bad} are outside the video '
                             f'({len(video)} frames)')
        return keyframes

    def _check_frame_size(self, video: VideoFrames) -> None:
        """Frames for an exported model (resized to the size it takes) must
        have its aspect ratio."""
        if self._fixed_size is None:
            return
        h, w = self._fixed_size
        width = video.width * h / video.height  # at the exported height
        if abs(width - w) > 1:
            raise ValueError(
                f'The exported model takes {h}x{w} frames (H x W, fixed at '
                f'export); {video.name} has {video.height}x{video.width}, '
                'another aspect ratio: export again for it, e.g. with '
                f'--shape {self.clip_len} {h} {round(width)}')

    def _check_frame_rate(self, video: VideoFrames) -> None:
        """Warn when a file's frame rate makes clips span another time than
        in training."""
        if self._interval_overridden or not video.fps:
            return
        trained = training_fps(self.cfg)
        if abs(video.fps / trained - 1) <= 0.2:
            return
        span = self.clip_len * self.frame_interval
        print_log(
            f'{video.name} is at {video.fps:.3g} fps and the model samples '
            f'clips at {trained:.3g} fps: a clip spans '
            f'{span / video.fps:.2f} s instead of {span / trained:.2f} s. '
            f'frame_interval='
            f'{max(1, round(self.frame_interval * video.fps / trained))} '
            'keeps the trained duration.', logger='current',
            level=logging.WARNING)

    def _pack(self, video: VideoFrames, frames: np.ndarray, keyframe: int,
              inds: np.ndarray, fps: float) -> dict:
        """One clip through the pipeline, with the metainfo that
        :meth:`KeyframeResult.from_data_sample` reads."""
        shape = (video.height, video.width)
        name = osp.basename(video.name)
        packed = self.pipeline(
            dict(imgs=list(frames), img_shape=shape, original_shape=shape,
                 modality='RGB', num_clips=1, clip_len=len(frames),
                 frame_interval=self.frame_interval,
                 frame_inds=np.asarray(inds), start_index=0,
                 total_frames=len(video), video_id=name,
                 timestamp=keyframe, img_key=f'{name},{keyframe}'))
        packed['data_samples'].set_metainfo(
            dict(frame_index=int(keyframe), fps=fps, ori_shape=shape))
        return packed

    def _auto_batch_size(self, video: VideoFrames) -> int:
        probe = self._pack(video, np.zeros((1, video.height, video.width, 3),
                                           np.uint8), 0, np.zeros(1), 1.)
        pixels = self.clip_len * int(np.prod(probe['inputs'].shape[-2:]))
        return max(1, min(_MAX_AUTO_BATCH,
                          _AUTO_BATCH_PIXELS // max(pixels, 1)))

    def preprocess(self,
                   inputs: VideoFrames,
                   batch_size: Optional[int] = None,
                   keyframes: Optional[Sequence[int]] = None,
                   predict_stepsize: int = 8) -> Iterator[dict]:
        """Clips around the keyframes, through the test pipeline, collated.

        Each keyframe gets ``clip_len`` frames ``frame_interval`` apart,
        centred on it (indices clamped at the video's ends), as the config's
        test ``SampleAVAFrames`` takes them.

        Args:
            inputs (VideoFrames): From :func:`load_video`.
            batch_size (int, optional): Clips per batch (default: automatic,
                see :meth:`__call__`).
            keyframes, predict_stepsize: See :meth:`__call__`.

        Yields:
            dict: ``inputs`` (list of uint8 (3, T, h, w) tensors) and
            ``data_samples`` (``ActionDataSample``), as ``model.test_step``
            takes them.
        """
        video = inputs
        keyframes = self._keyframes(video, keyframes, predict_stepsize)
        if not keyframes:
            return
        batch_size = batch_size or self._auto_batch_size(video)
        fps = video.fps or training_fps(self.cfg)
        for chunk in self._get_chunk_data(keyframes, batch_size):
            clips = [clip_indices(k, self.clip_len, self.frame_interval,
                                  len(video)) for k in chunk]
            needed = sorted(set(np.concatenate(clips).tolist()))
            frames = video.get_batch(needed)
            where = {idx: i for i, idx in enumerate(needed)}
            yield self.collate_fn([
                self._pack(video, frames[[where[i] for i in inds.tolist()]],
                           k, inds, fps) for k, inds in zip(chunk, clips)
            ])

    @torch.no_grad()
    def forward(self, inputs: dict, **kwargs) -> list:
        """``model.test_step`` on one collated batch; the predictions keep
        the metainfo of the inputs' data samples."""
        preds = self.model.test_step(inputs)
        for sample, pred in zip(inputs['data_samples'], preds):
            pred.set_metainfo(sample.metainfo)
        return preds

    def _to_result(self, pred) -> KeyframeResult:
        return KeyframeResult.from_data_sample(pred, self.label_names,
                                               self.num_classes,
                                               self.score_thr)

    def visualize(self,
                  inputs: VideoFrames,
                  preds: list,
                  return_vis: bool = False,
                  show: bool = False,
                  wait_time: float = 0.,
                  vis_out_dir: str = '') -> Optional[List[np.ndarray]]:
        """Draw each keyframe's actors and labels on it.

        Args:
            inputs (VideoFrames): The video.
            preds (list[ActionDataSample]): From :meth:`forward`.
            return_vis (bool): Return the drawn keyframes.
            show (bool): Show each in a window.
            wait_time (float): Seconds each is shown (0: until a key).
            vis_out_dir (str): Save each as ``<frame_index>.jpg`` there.

        Returns:
            list[np.ndarray] or None: (H, W, 3) RGB drawn keyframes if
            ``return_vis``.
        """
        if not (return_vis or show or vis_out_dir):
            return None
        drawn = []
        for pred in preds:
            result = self._to_result(pred)
            k = result.frame_index
            out_file = osp.join(vis_out_dir, f'{k:06d}.jpg') \
                if vis_out_dir else None
            image = self.visualizer.add_datasample(
                f'{osp.basename(inputs.name)}_{k}', inputs.get_batch([k])[0],
                result, show=show, wait_time=wait_time, out_file=out_file)
            if return_vis:
                drawn.append(image)
        return drawn if return_vis else None

    def postprocess(self,
                    preds: list,
                    visualization: Optional[List[np.ndarray]] = None,
                    return_datasamples: bool = False,
                    pred_out_file: str = '') -> Dict[str, Any]:
        """Keyframe results in pixels with class names.

        Args:
            preds (list[ActionDataSample]): From :meth:`forward`.
            visualization (list, optional): From :meth:`visualize`.
            return_datasamples (bool): Keep ``preds`` as they are.
            pred_out_file (str): Also dump the results there (json / yaml
                / pickle, by its extension).

        Returns:
            dict: ``predictions``: list of :class:`KeyframeResult` (or the
            data samples); ``visualization``.
        """
        results = [self._to_result(p) for p in preds]
        if pred_out_file:
            dump([r.to_dict() for r in results], pred_out_file)
        return dict(predictions=preds if return_datasamples else results,
                    visualization=visualization)

    # ------------------------------------------------------- model controls

    @property
    def keep_rate(self) -> Optional[Tuple[float, ...]]:
        """The token keep rate of each pruning layer (None without token
        pruning): the backbone's, or an exported model's (fixed at
        export)."""
        rates = getattr(self.model, 'keep_rate', None)  # exported models
        if rates is None:
            rates = getattr(getattr(self.model, 'backbone', None),
                            'keep_rate', None)
        if rates is None:
            return None
        return tuple(rates) if isinstance(rates, (list, tuple)) else \
            (rates, )

    def set_keep_rate(self, keep_rate: Union[float, Sequence[float]]) -> None:
        """Set the token keep rate (one rate or one per pruning layer) for
        the next calls: ``EVAD.set_keep_rate``.

        Raises:
            ValueError: A model without the control, a backbone without
                token pruning, an exported model (its keep rate is fixed in
                the graph) or a rate outside (0, 1].
        """
        set_keep_rate = getattr(self.model, 'set_keep_rate', None)
        if set_keep_rate is None:
            raise ValueError(
                f'{type(self.model).__name__} has no set_keep_rate: the keep '
                'rate can be changed on an EVAD detector only')
        if isinstance(keep_rate, (list, tuple)) and len(keep_rate) == 1:
            keep_rate = keep_rate[0]
        set_keep_rate(keep_rate)


def detect_video(model,
                 video: VideoType,
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
    """Detect the actors of a video's keyframes and score their actions:
    :class:`EVADInferencer` in one call.

    Args:
        model: From :func:`init_detector` (with ``model.cfg``).
        video: A video file, a (T, H, W, 3) uint8 RGB array, a list of
            (H, W, 3) frames or a :class:`VideoFrames`.
        keyframes (list[int], optional): 0-based frame indices. Default:
            :func:`default_keyframes` of the whole video.
        predict_stepsize (int): Frames between default keyframes.
        score_thr (float): Action score threshold for ``labels``.
        short_side (int, optional): Resize frames to this short side
            instead of the config's.
        label_map: Class names (see :func:`get_label_names`).
        fps (float, optional): The video's frame rate (see
            :meth:`EVADInferencer.__call__`).
        frame_interval (int, optional): Override the config's.
        batch_size (int, optional): Keyframes per forward pass (default:
            automatic).
        progress (bool): Show a progress bar.

    Returns:
        list[KeyframeResult]: One per keyframe, in the order of
        ``keyframes``.
    """
    inferencer = EVADInferencer(
        model, label_map=label_map, score_thr=score_thr,
        short_side=short_side, frame_interval=frame_interval,
        show_progress=progress)
    return inferencer(video, batch_size=batch_size, fps=fps,
                      keyframes=keyframes,
                      predict_stepsize=predict_stepsize)['predictions']
