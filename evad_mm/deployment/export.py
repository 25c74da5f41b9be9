"""Export a built EVAD detector to one ONNX file.

The graph maps a normalised clip batch to every query's box, person score,
action probabilities and actor flag (:class:`EVADOnnxGraph`); the runtime
side is :mod:`evad_mm.deployment.ort_runner` (numpy + onnxruntime) and
:class:`evad_mm.deployment.ONNXDetector`.
"""
import copy
import io
import math
import os
import os.path as osp
import warnings
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import bbox2roi
from torch import Tensor, nn

from evad_mm.version import __version__
from .actor_selection import actor_mask, check_nms_cfg
from .exportable import onnx_exportable
from .ort_runner import (CONFIG_KEY, INPUT_NAME, METADATA_KEY, OUTPUT_NAMES,
                         EVADOnnxRunner, ExportInfo)
from .scan_batch import scan_over_batch

MIN_OPSET = 16  # RoiAlign's coordinate_transformation_mode (half_pixel)
DEFAULT_OPSET = 17  # also LayerNormalization as one op


class EVADOnnxGraph(nn.Module):
    """What an exported EVAD file computes, as a PyTorch module.

    All Q queries run through the localization stages; the queries that
    ``roi_head.test_cfg`` keeps (:func:`actor_mask`) are the only boxes the
    action head's tokens and boxes attend to, so the actors' action scores
    are those :meth:`EVAD.predict` gives. Fixed output shapes, no Python
    branch on tensor values.

    Args:
        detector (nn.Module): A built ``EVAD`` in eval mode.
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        if not hasattr(detector, 'forward_tensors'):
            raise TypeError(
                f'{type(detector).__name__} is not an EVAD detector (it has '
                'no forward_tensors); only EVAD exports to ONNX here.')
        self.detector = detector
        self.test_cfg = detector.roi_head._actor_test_cfg()
        if self.test_cfg.get('nms') is not None:
            check_nms_cfg(self.test_cfg['nms'])

    def forward(self, inputs: Tensor) -> Tuple[Tensor, ...]:
        """Detect on normalised clips.

        Args:
            inputs (Tensor): (B, 3, T, H, W).

        Returns:
            tuple[Tensor]: ``boxes`` (B, Q, 4) pixel xyxy, ``person_scores``
            (B, Q), ``action_scores`` (B, Q, num_classes) (column 0 zero;
            meaningful for actors), ``actor_mask`` (B, Q) bool and
            ``kept_tokens`` (B, M) int64: the (t, h, w) grid positions of
            the tokens the backbone kept.
        """
        img_shape = tuple(inputs.shape[-2:])
        samples = [
            DetDataSample(metainfo=dict(img_shape=img_shape))
            for _ in range(len(inputs))
        ]
        _, feats, boxes, person_scores = \
            self.detector._features_and_queries(inputs, samples)
        actors = actor_mask(boxes, person_scores, self.test_cfg)
        action_scores = self.detector.action_head.predict(
            feats, bbox2roi(list(boxes)), [img_shape] * len(inputs),
            actor_mask=actors.flatten())
        if hasattr(feats, 'token_index'):
            kept_tokens = feats.token_index
        else:  # a plain (B, C, t, h, w) map keeps every position
            kept_tokens = torch.arange(
                math.prod(feats.shape[2:]),
                device=inputs.device).expand(len(inputs), -1)
        return (boxes, person_scores,
                action_scores.view(*actors.shape, -1), actors, kept_tokens)


def _preprocessor_stats(detector: nn.Module) -> Tuple[list, list, bool]:
    """Mean, std and to_rgb of an ``ActionDataPreprocessor`` on NCTHW."""
    pre = getattr(detector, 'data_preprocessor', None)
    if getattr(pre, 'format_shape', None) != 'NCTHW':
        raise ValueError(
            'the ONNX runtime normalises (B, 3, T, H, W) clips as '
            "ActionDataPreprocessor(format_shape='NCTHW') does; this model's "
            f'data_preprocessor is {type(pre).__name__} with format_shape='
            f'{getattr(pre, "format_shape", None)!r}.')
    if isinstance(getattr(pre, 'mean', None), Tensor):
        mean = pre.mean.flatten().tolist()
        std = pre.std.flatten().tolist()
    else:  # no normalisation configured
        mean, std = [0.] * 3, [1.] * 3
    return mean, std, bool(pre.to_rgb)


def _config_text(cfg, info: ExportInfo) -> str:
    """The config as Python source (``Config.fromstring`` reads it back),
    with the keep rate and ``roi_head.test_cfg`` the graph was traced with.
    """
    if cfg is None:
        return ''
    cfg = copy.deepcopy(cfg)
    if info.keep_rate:
        rates = info.keep_rate
        cfg.model.backbone.keep_rate = rates[0] if len(set(rates)) == 1 \
            else list(rates)
    cfg.model.roi_head.test_cfg = dict(info.test_cfg)
    return cfg.pretty_text


def export_info(detector: nn.Module,
                input_shape: Sequence[Optional[int]],
                opset: int,
                classes: Optional[Sequence[str]] = None,
                checkpoint: Optional[str] = None) -> ExportInfo:
    """The metadata written into an exported file."""
    mean, std, to_rgb = _preprocessor_stats(detector)
    rates = getattr(detector.backbone, 'keep_rate', ())
    test_cfg = detector.roi_head._actor_test_cfg()
    return ExportInfo(
        input_shape=list(input_shape),
        keep_rate=[float(r) for r in rates],
        num_proposals=int(detector.rpn_head.num_proposals),
        num_classes=int(detector.action_head.num_classes),
        test_cfg={k: v for k, v in test_cfg.items() if v is not None},
        mean=mean,
        std=std,
        to_rgb=to_rgb,
        classes=list(classes) if classes else None,
        checkpoint=osp.basename(checkpoint) if checkpoint else None,
        opset=int(opset),
        producer=f'evad_mm {__version__}, torch {torch.__version__}, '
        'TorchScript-based torch.onnx.export')


def _set_output_shapes(model, shapes: Sequence[Sequence[int]]) -> None:
    """Write the traced output shapes into the graph outputs (the exporter
    leaves some axes symbolic where a reshape computed them)."""
    for value, shape in zip(model.graph.output, shapes):
        dims = value.type.tensor_type.shape.dim
        del dims[:]
        for size in shape:
            dims.add().dim_value = int(size)


def export_onnx(detector: nn.Module,
                out_file: str,
                clip_shape: Sequence[int],
                batch_size: int = 1,
                opset: int = DEFAULT_OPSET,
                dynamic_batch: bool = False,
                cfg=None,
                classes: Optional[Sequence[str]] = None,
                checkpoint: Optional[str] = None) -> ExportInfo:
    """Trace ``detector`` and write it as one checked ONNX file.

    The keep rate (``detector.backbone.keep_rate``) and ``roi_head.test_cfg``
    at the time of the call are fixed in the graph; they, the clip shape,
    the preprocessor's mean and std, the class names and ``cfg`` are
    written into the file's metadata (:class:`ExportInfo`).

    Args:
        detector (nn.Module): A built ``EVAD``; it is put in eval mode.
        out_file (str): The ``.onnx`` file to write.
        clip_shape (Sequence[int]): (T, H, W) of the clips the file takes.
        batch_size (int): Clips per run of a fixed-batch graph.
        opset (int): ONNX opset, >= 16. Defaults to 17.
        dynamic_batch (bool): Any number of clips per run: the batch-1
            graph runs once per clip inside ONNX's ``Scan``.
        cfg (mmengine.Config, optional): Written into the metadata, so that
            the file alone rebuilds the test pipeline. Defaults to
            ``detector.cfg`` (set by ``init_detector``).
        classes (Sequence[str], optional): Names of class ids 1, 2, ...
        checkpoint (str, optional): Recorded by file name.

    Returns:
        ExportInfo: What was written into the metadata.
    """
    import onnx
    if opset < MIN_OPSET:
        raise ValueError(
            f'opset={opset}: the exported RoiAlign needs opset >= '
            f'{MIN_OPSET} (aligned half-pixel coordinates).')
    if len(clip_shape) != 3 or min(clip_shape) < 1:
        raise ValueError(f'clip_shape={tuple(clip_shape)} must be (T, H, W).')
    if batch_size < 1:
        raise ValueError(f'batch_size={batch_size} must be >= 1.')
    if dynamic_batch and batch_size != 1:
        raise ValueError('dynamic_batch traces one clip and scans over the '
                         f'batch; batch_size={batch_size} must be 1 then.')
    detector.eval()
    graph = EVADOnnxGraph(detector).eval()
    device = next(detector.parameters()).device
    example = torch.randn(batch_size, 3, *clip_shape, device=device)
    buffer = io.BytesIO()
    with onnx_exportable(detector), torch.no_grad(), \
            warnings.catch_warnings():
        # shape-specialised by design: every Python value the tracer turns
        # into a constant depends on the input shape only (checked against
        # PyTorch after export, see compare_with_pytorch)
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        warnings.filterwarnings('ignore', message='.*legacy TorchScript')
        warnings.filterwarnings('ignore', category=DeprecationWarning)
        warnings.filterwarnings('ignore', category=FutureWarning)
        warnings.filterwarnings(
            'ignore', category=UserWarning, module=r'torch\.onnx')
        torch.onnx.export(
            graph, (example, ),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            do_constant_folding=True)
    model = onnx.load_from_string(buffer.getvalue())
    del buffer
    with torch.no_grad():
        _set_output_shapes(model, [o.shape for o in graph(example)])
    if dynamic_batch:
        model = scan_over_batch(model)
    info = export_info(detector, [None if dynamic_batch else batch_size, 3,
                                  *clip_shape], opset, classes, checkpoint)
    onnx.helper.set_model_props(model, {
        METADATA_KEY: info.to_json(),
        CONFIG_KEY: _config_text(
            cfg if cfg is not None else getattr(detector, 'cfg', None), info)
    })
    out_dir = osp.dirname(osp.abspath(out_file))
    os.makedirs(out_dir, exist_ok=True)
    onnx.save(model, out_file)
    onnx.checker.check_model(out_file, full_check=True)
    return info


def output_differences(got: Dict[str, np.ndarray],
                       ref: Dict[str, np.ndarray]) -> Dict[str, float]:
    """Largest absolute differences between two sets of graph outputs.

    Returns:
        dict: ``boxes`` (pixels), ``person_scores``, ``action_scores`` (of
        the queries both mark as actors: the others' rows are not
        predictions), and the number of differing ``actor_mask`` entries
        and ``kept_tokens`` (as sets per clip).
    """
    both = ref['actor_mask'] & got['actor_mask']

    def largest(a, b):
        return float(np.abs(a - b).max()) if a.size else 0.

    return dict(
        boxes=largest(got['boxes'], ref['boxes']),
        person_scores=largest(got['person_scores'], ref['person_scores']),
        action_scores=largest(got['action_scores'][both],
                              ref['action_scores'][both]),
        actor_mask=int((got['actor_mask'] != ref['actor_mask']).sum()),
        kept_tokens=int((np.sort(got['kept_tokens'], 1) !=
                         np.sort(ref['kept_tokens'], 1)).sum()))


def pytorch_outputs(detector: nn.Module,
                    inputs: Tensor) -> Dict[str, np.ndarray]:
    """:class:`EVADOnnxGraph` in PyTorch (mmcv's own ops), as numpy."""
    device = next(detector.parameters()).device
    with torch.no_grad():
        outputs = EVADOnnxGraph(detector.eval())(inputs.to(device))
    return dict(zip(OUTPUT_NAMES, (o.cpu().numpy() for o in outputs)))


def compare_with_pytorch(detector: nn.Module,
                         onnx_file: str,
                         inputs: Tensor,
                         runner: Optional[EVADOnnxRunner] = None
                         ) -> Dict[str, float]:
    """Run PyTorch (:func:`pytorch_outputs`) and onnxruntime on the same
    normalised clips (B, 3, T, H, W); see :func:`output_differences`."""
    runner = runner or EVADOnnxRunner(onnx_file)
    return output_differences(
        runner.run(inputs.cpu().numpy()), pytorch_outputs(detector, inputs))
