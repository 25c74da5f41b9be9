"""Loading a checkpoint of another class count (fine-tuning): only the final
action classifier layers of ``ContextRefinementHead`` are re-initialised,
with one log line; every other mismatch is still reported."""
import logging
import os.path as osp
import warnings

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.runner import load_checkpoint

from evad_mm.registry import MODELS
from tests.conftest import REPO, toy_model_cfg

TOY = osp.join(REPO, 'configs', 'evad_toy_ava.py')
CLASSIFIER_OUT = ('action_head.classifiers.0.3.',
                  'action_head.classifiers.1.3.')


def build_toy(num_classes, seed=0):
    torch.manual_seed(seed)
    model = MODELS.build(
        toy_model_cfg(action_head=dict(num_classes=num_classes)))
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # one INFO line per parameter
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    return model


class Records(logging.Handler):

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def log_lines():
    """Messages of the current MMLogger (it does not propagate to the root
    logger, so caplog does not see them)."""
    logger = MMLogger.get_current_instance()
    handler = Records()
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)


@pytest.fixture(scope='module')
def ckpt_81(tmp_path_factory):
    """A checkpoint of the toy model with AVA's 81 classes."""
    model = build_toy(81, seed=1)
    path = tmp_path_factory.mktemp('ckpt') / 'evad_81.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return str(path), model.state_dict()


def reinit_lines(lines):
    return [m for m in lines if 're-initialised' in m]


def test_load_checkpoint_reinitialises_only_the_class_layers(
        ckpt_81, log_lines, capsys):
    path, saved = ckpt_81
    model = build_toy(8)
    load_checkpoint(model, path, map_location='cpu', strict=False,
                    logger='current')
    state = model.state_dict()
    for key, value in state.items():
        if key.startswith(CLASSIFIER_OUT):
            assert value.shape[0] == 7, key  # num_classes - 1
            assert saved[key].shape[0] == 80
        else:
            assert torch.equal(value, saved[key]), key
    for prefix in CLASSIFIER_OUT:
        weight = state[prefix + 'weight']
        assert weight.shape == (7, 256)
        assert 0 < weight.std() < 0.05  # trunc_normal std 0.02
        assert torch.all(state[prefix + 'bias'] == 0)
    lines = reinit_lines(log_lines)
    assert len(lines) == 1, log_lines
    assert 'ContextRefinementHead' in lines[0]
    assert '81 classes, this model 8' in lines[0]
    assert 'action_head.classifiers.{0,1}.3' in lines[0]
    # no size-mismatch wall, neither logged nor printed
    everything = '\n'.join(log_lines) + capsys.readouterr().out
    assert 'size mismatch' not in everything
    assert 'do not match exactly' not in everything
    # the re-initialised model trains and predicts 7 classes
    logits = model.action_head.classifiers[1](torch.randn(3, 128))
    assert logits.shape == (3, 7)


def test_strict_load_and_same_class_count(ckpt_81, log_lines):
    path, saved = ckpt_81
    model = build_toy(8)
    # torch's own loader, strict: nothing missing or unexpected
    result = model.load_state_dict(
        torch.load(path, weights_only=True)['state_dict'], strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert len(reinit_lines(log_lines)) == 1
    # a checkpoint of the same class count loads every tensor, silently
    same = build_toy(81)
    load_checkpoint(same, path, strict=True, logger='current')
    assert len(reinit_lines(log_lines)) == 1
    for key, value in same.state_dict().items():
        assert torch.equal(value, saved[key]), key


def test_head_alone_and_behind_proposals(log_lines):
    """The head at the top level (no prefix) and inside mmaction2's
    two-stage detectors (``roi_head.bbox_head.``)."""
    head = dict(type='ContextRefinementHead', in_channels=16, embed_dims=32,
                depth=2, num_heads=4, hidden_channels=24, pos_grid=(4, 4, 4))
    torch.manual_seed(0)
    old = MODELS.build(dict(head, num_classes=81)).state_dict()
    new = MODELS.build(dict(head, num_classes=6))
    new.load_state_dict(old, strict=True)
    assert new.classifiers[0][3].weight.shape == (5, 24)
    assert torch.equal(new.classifiers[0][0].weight,
                       old['classifiers.0.0.weight'])
    assert 'classifiers.{0,1}.3 for' in reinit_lines(log_lines)[-1]
    wrapped = torch.nn.Module()
    wrapped.roi_head = torch.nn.Module()
    wrapped.roi_head.bbox_head = MODELS.build(dict(head, num_classes=6))
    wrapped.load_state_dict(
        {f'roi_head.bbox_head.{k}': v for k, v in old.items()}, strict=True)
    assert len(reinit_lines(log_lines)) == 2
    assert 'roi_head.bbox_head.classifiers.{0,1}.3' in log_lines[-1]


def test_other_mismatches_are_still_reported(ckpt_81, tmp_path, log_lines):
    path, saved = ckpt_81
    state = dict(saved)
    # a genuine mismatch elsewhere, and a classifier whose hidden width
    # differs (not a class-count change): both reported as usual
    state['action_head.encoder_to_decoder.weight'] = torch.zeros(64, 128)
    state['action_head.classifiers.1.3.weight'] = torch.zeros(80, 100)
    bad = tmp_path / 'bad.pth'
    torch.save({'state_dict': state}, bad)
    model = build_toy(8)
    load_checkpoint(model, str(bad), strict=False, logger='current')
    text = '\n'.join(log_lines)
    assert 'size mismatch for action_head.encoder_to_decoder.weight' in text
    assert 'size mismatch for action_head.classifiers.1.3.weight' in text
    assert 'classifiers.0.3.weight' not in text.replace(
        'classifiers.0.3 for', '')
    lines = reinit_lines(log_lines)
    assert len(lines) == 1 and 'classifiers.0.3 for fine-tuning' in lines[0]
    with pytest.raises(RuntimeError, match='encoder_to_decoder'):
        load_checkpoint(build_toy(8), str(bad), strict=True)


def test_init_detector_loads_another_class_count(ckpt_81, log_lines):
    from evad_mm.apis import RandomWeightsWarning, init_detector
    path, saved = ckpt_81
    with warnings.catch_warnings():
        warnings.simplefilter('error', RandomWeightsWarning)
        model = init_detector(TOY, path)  # the toy config: 8 classes
    assert model.action_head.num_classes == 8
    state = model.state_dict()
    for key, value in state.items():
        if key.startswith(CLASSIFIER_OUT):
            assert value.shape[0] == 7
        else:
            assert torch.equal(value, saved[key]), key
    assert len(reinit_lines(log_lines)) == 1
    assert not any('size mismatch' in m or 'do not match' in m
                   for m in log_lines), log_lines


def test_custom_classes_config_agrees_with_dataset_and_metric():
    cfg = Config.fromfile(
        osp.join(REPO, 'configs', 'evad_vitb_ava_custom_classes.py'))
    classes = list(cfg.custom_classes)
    assert classes and 0 not in classes and len(set(classes)) == len(classes)
    num = len(classes) + 1
    assert cfg.num_classes == num
    assert cfg.model.action_head.num_classes == num
    assert len(cfg.classes) == len(classes)  # names for the demos
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = cfg[loader].dataset
        assert dataset.custom_classes == classes, loader
        assert dataset.num_classes == num, loader
    for evaluator in ('val_evaluator', 'test_evaluator'):
        metric = cfg[evaluator]
        assert metric.type == 'AVAMetric'
        assert metric.custom_classes == classes, evaluator
        assert metric.num_classes == num, evaluator
        assert metric.label_file == cfg.val_dataloader.dataset.label_file
    from mmaction.registry import METRICS
    metric = METRICS.build(cfg.val_evaluator)
    assert metric.custom_classes == [0] + classes
    # every custom class is one of AVA's 60 evaluated classes
    ava60 = {1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17, 20, 22, 24,
             26, 27, 28, 29, 30, 34, 36, 37, 38, 41, 43, 45, 46, 47, 48, 49,
             51, 52, 54, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68,
             69, 70, 72, 73, 74, 76, 77, 78, 79, 80}
    assert set(classes) <= ava60
    # everything else is the parent's
    parent = Config.fromfile(osp.join(REPO, 'configs', 'evad_vitb_ava.py'))
    assert cfg.model.backbone == parent.model.backbone
    assert cfg.train_dataloader.dataset.ann_file == \
        parent.train_dataloader.dataset.ann_file
