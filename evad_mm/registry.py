"""Registries evad_mm registers into.

EVAD's modules live in mmaction2's ``MODELS`` (``default_scope='mmaction'``).
RoI extractors and heads are also registered in mmdet's ``MODELS``, as
mmaction2 does with its own AVA heads, so that mmdet-scoped detectors such as
``FastRCNN`` can use them. ``TASK_UTILS`` is mmdet's (match costs). Data
transforms and metrics go into mmaction2's ``TRANSFORMS`` and ``METRICS``.
"""
from mmaction.registry import HOOKS, METRICS, MODELS, TRANSFORMS
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet.registry import TASK_UTILS

__all__ = [
    'HOOKS', 'METRICS', 'MODELS', 'MMDET_MODELS', 'TASK_UTILS', 'TRANSFORMS'
]
