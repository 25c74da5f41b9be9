"""Tiny EVAD models exported once per test session (64-pixel clips)."""
import logging
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope

from tests.conftest import REPO

TINY_TOY = osp.join(osp.dirname(osp.abspath(__file__)), 'tiny_toy_ava.py')
CLIP = (8, 64, 64)
# name: build / rule arguments of the ``exported`` fixture
VARIANTS = {
    'rho1.0': dict(evad_layout=True, keep_rate=1.0, rule='median'),
    'rho0.7': dict(evad_layout=True, keep_rate=0.7, rule='median'),
    'stem-rho0.7-nms': dict(
        keep_rate=0.7,
        rule='median+nms',
        export_kwargs=dict(classes=[f'c{i}' for i in range(7)])),
}


def build_tiny(evad_layout=False, keep_rate=0.7, seed=0):
    """The toy model (``evad_layout``: linear patch embedding, one box
    feature; else the convolutional stem), random weights.

    Each localization stage's box regressor is scaled down so that boxes
    stay near the frame, as a trained model's do: random regressors send
    boxes thousands of pixels out, where float32 rounding alone (PyTorch
    against PyTorch with another thread count) moves them by more than the
    1e-3 px the parity tests ask for.
    """
    from evad_mm.registry import MODELS
    from tests.conftest import toy_model_cfg
    cfg = Config.fromfile(
        osp.join(REPO, 'tests', 'configs', 'evad_toy_ava_evad_layout.py')
        if evad_layout else osp.join(REPO, 'configs', 'evad_toy_ava.py'))
    logger = MMLogger.get_current_instance()
    level = logger.level
    with DefaultScope.overwrite_default_scope('mmaction'):
        torch.manual_seed(seed)
        model = MODELS.build(toy_model_cfg(evad_layout=evad_layout))
        logger.setLevel(logging.WARNING)  # one INFO line per parameter
        try:
            model.init_weights()
        finally:
            logger.setLevel(level)
    with torch.no_grad():
        for head in model.roi_head.bbox_head:
            head.fc_reg.weight.mul_(0.1)
    model.set_keep_rate(keep_rate)
    model.cfg = cfg
    return model.eval()


def clips(batch, clip=CLIP, seed=0):
    """(batch, 3, T, H, W) normalised random clips."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, *clip, generator=g)


def median_score_rule(model, clip=CLIP, nms=None):
    """A ``test_cfg`` whose threshold is the median person score of a
    random clip: some queries pass, some do not."""
    with torch.no_grad():
        _, scores, _ = model.forward_tensors(clips(1, clip, seed=123))
    rule = dict(score_thr=float(scores[0].median()))
    if nms is not None:
        rule['nms'] = dict(type='nms', iou_threshold=nms)
    return rule


@pytest.fixture(scope='session')
def exported(tmp_path_factory):
    """``exported(name, clip=CLIP, rule=None, export_kwargs=None,
    **build_kwargs)``: (model, onnx path), exported once per name.

    ``rule``: None keeps the toy config's actor rule (score_thr 0.3 + NMS,
    which random weights do not reach: every query is kept before NMS);
    'median' and 'median+nms' a threshold some queries pass (see
    :func:`median_score_rule`), the latter with an NMS at IoU 0.3.
    """
    from evad_mm.deployment import export_onnx
    cache = {}
    folder = tmp_path_factory.mktemp('onnx')

    def get(name, clip=CLIP, rule=None, export_kwargs=None, **kwargs):
        if name not in cache:
            model = build_tiny(**kwargs)
            if rule is not None:
                model.roi_head.test_cfg = median_score_rule(
                    model, clip, 0.3 if rule == 'median+nms' else None)
            path = str(folder / f'{name}.onnx')
            export_onnx(model, path, clip, **(export_kwargs or {}))
            cache[name] = model, path
        return cache[name]

    return get
