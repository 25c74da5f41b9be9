"""An exported EVAD file in place of the PyTorch detector for inference."""
import os
from typing import List, Optional, Sequence, Tuple

import torch
from mmaction.structures import ActionDataSample
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from .ort_runner import EVADOnnxRunner, ExportInfo


class ONNXDetector:
    """Runs an ONNX file from ``tools/deployment/export_onnx.py`` where the
    inference API expects an EVAD detector (``init_detector('model.onnx')``
    returns one; ``detect_video`` and the demos take it).

    Like the PyTorch model it has the config (``cfg``, rebuilt from the
    file's metadata), ``dataset_meta`` and ``test_step``, whose predictions
    are those of ``EVAD.predict``: per clip ``pred_instances.bboxes`` (n, 4)
    normalised to [0, 1], ``.scores`` (n, num_classes) and
    ``.actor_scores`` (n, ). The data preprocessor of the config normalises
    and stacks the clips, onnxruntime runs the graph and the actors are the
    queries the graph marks by the exported ``roi_head.test_cfg``.

    What is fixed at export: the clip shape (T, H, W), the keep rate and
    ``test_cfg``. Clips of another shape get a ValueError that says so.

    Args:
        path (str): The ``.onnx`` file.
        device (str): 'cpu' (onnxruntime's CPU provider).
        providers (Sequence[str], optional): Other onnxruntime execution
            providers, instead of the CPU one.
        intra_op_threads (int, optional): onnxruntime threads per operator
            (default: onnxruntime's, all cores).
        graph_optimization (str): onnxruntime graph optimisation level,
            'disable', 'basic', 'extended' or 'all' (default).
    """

    def __init__(self,
                 path: str,
                 device: str = 'cpu',
                 providers: Optional[Sequence[str]] = None,
                 intra_op_threads: Optional[int] = None,
                 graph_optimization: str = 'all') -> None:
        if torch.device(device).type != 'cpu' and providers is None:
            raise ValueError(
                f'ONNXDetector runs on onnxruntime\'s CPU provider, not '
                f'device={device!r}; use device="cpu", or pass onnxruntime '
                'providers (e.g. providers=["CUDAExecutionProvider"] with '
                'onnxruntime-gpu installed).')
        self.path = os.fspath(path)
        self.runner = EVADOnnxRunner(
            self.path,
            providers=providers,
            intra_op_threads=intra_op_threads,
            graph_optimization=graph_optimization)
        if not self.runner.config_text:
            raise ValueError(
                f'{self.path} holds no config in its metadata, which '
                'ONNXDetector needs for the test pipeline and the data '
                'preprocessor: export it with tools/deployment/export_onnx.py '
                '(or export_onnx(..., cfg=cfg)).')
        self.cfg = Config.fromstring(self.runner.config_text, '.py')
        classes = self.info.classes
        self.dataset_meta = dict(classes=tuple(classes)) if classes else {}
        from mmaction.registry import MODELS
        with DefaultScope.overwrite_default_scope(
                self.cfg.get('default_scope', 'mmaction')):
            self.data_preprocessor = MODELS.build(
                self.cfg.model.data_preprocessor)

    @property
    def info(self) -> ExportInfo:
        """What the file was exported for (its metadata)."""
        return self.runner.info

    @property
    def keep_rate(self) -> Tuple[float, ...]:
        """The keep rate of each pruning layer, fixed at export."""
        return tuple(self.info.keep_rate)

    def set_keep_rate(self, keep_rate) -> None:
        """The keep rate is part of the graph: always a ValueError."""
        raise ValueError(
            f'{os.path.basename(self.path)} was exported with keep rate '
            f'{"/".join(f"{r:g}" for r in self.keep_rate) or "-"}, which is '
            f'fixed in the graph; export again with --keep-rate {keep_rate}.')

    def eval(self) -> 'ONNXDetector':
        return self

    def to(self, device) -> 'ONNXDetector':
        if torch.device(device).type != 'cpu':
            raise ValueError(f'ONNXDetector cannot move to {device}: it runs '
                             "on onnxruntime's provider.")
        return self

    def _check_inputs(self, inputs: List[torch.Tensor],
                      samples: List[ActionDataSample]) -> None:
        """Each clip (3, T, H, W) of the exported shape, and its sample's
        ``img_shape`` (the boxes' frame) equal to H x W."""
        for clip, sample in zip(inputs, samples):
            self.runner.check_clips(clip[None].numpy())
            img_shape = sample.metainfo.get('img_shape')
            if img_shape is not None and \
                    tuple(img_shape[:2]) != tuple(clip.shape[-2:]):
                raise ValueError(
                    f'a clip of {tuple(clip.shape[-2:])} pixels has '
                    f'img_shape {tuple(img_shape[:2])}: the exported graph '
                    'takes the clip size as the image size (no padding); '
                    'pass unpadded clips.')

    def test_step(self, data: dict) -> List[ActionDataSample]:
        """Detect actors in a collated batch (as ``EVAD.test_step``).

        Args:
            data (dict): ``inputs``, a list of (3, T, H, W) uint8 tensors,
                and ``data_samples`` (``ActionDataSample``), as mmengine's
                ``pseudo_collate`` gives them.

        Returns:
            list[ActionDataSample]: the samples with ``pred_instances``.
        """
        if len(data['inputs']) != len(data['data_samples']):
            raise ValueError(
                f'{len(data["inputs"])} clips but '
                f'{len(data["data_samples"])} data samples.')
        self._check_inputs(data['inputs'], data['data_samples'])
        data = self.data_preprocessor(data, False)
        inputs, samples = data['inputs'], data['data_samples']
        actors = self.runner.actors(self.runner.run(inputs.cpu().numpy()))
        for sample, found in zip(samples, actors):
            sample.pred_instances = InstanceData(
                bboxes=torch.from_numpy(found.bboxes),
                scores=torch.from_numpy(found.scores),
                actor_scores=torch.from_numpy(found.actor_scores))
        return samples

    def __repr__(self) -> str:
        t, h, w = self.info.clip_shape[1:]
        return (f'{type(self).__name__}({self.path!r}, clips {t}x{h}x{w}, '
                f'keep rate {self.keep_rate})')
