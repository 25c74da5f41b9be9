"""Deployment: EVAD as one ONNX graph, run by onnxruntime.

* :func:`export_onnx` (``tools/deployment/export_onnx.py``) writes the
  graph; :class:`EVADOnnxGraph` is what it computes, in PyTorch.
* :class:`ONNXDetector` runs an exported file where a PyTorch EVAD is
  expected (``init_detector('model.onnx')``, ``detect_video``, the demos).
* :mod:`evad_mm.deployment.ort_runner` needs only numpy and onnxruntime.
"""
from .actor_selection import actor_mask
from .export import EVADOnnxGraph, compare_with_pytorch, export_onnx
from .exportable import onnx_exportable
from .onnx_detector import ONNXDetector
from .ort_runner import EVADOnnxRunner, ExportInfo

__all__ = [
    'export_onnx', 'compare_with_pytorch', 'EVADOnnxGraph', 'ONNXDetector',
    'EVADOnnxRunner', 'ExportInfo', 'actor_mask', 'onnx_exportable'
]
