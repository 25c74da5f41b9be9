"""evad_mm.utils.checkpoint: safe reading, unwrapping, a one-line report, and
a clear refusal of another model's checkpoint."""
import os
import pickle
import shlex

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from torch import nn

from evad_mm.registry import MODELS
from evad_mm.utils import checkpoint as ckpt_utils
from evad_mm.utils.checkpoint import (CheckpointMismatchError,
                                      UnsafeCheckpointError, load_checkpoint,
                                      read_checkpoint, safe_torch_load,
                                      unwrap_state_dict)
from tests.conftest import REPO
from tests.models.test_classifier_finetune import build_toy, log_lines  # noqa

RECOGNIZER = f'{REPO}/configs/mixing/evadvit_videomae-vitb_k400.py'


def runner_checkpoint(model, experiment, cfg_text='', **extra):
    """What mmengine's runner saves (``Runner.save_checkpoint``)."""
    meta = dict(epoch=2, iter=10, experiment_name=experiment,
                cfg=cfg_text, dataset_meta=dict(classes=('a', 'b')))
    return dict(meta=meta, state_dict=model.state_dict(),
                message_hub=dict(), **extra)


@pytest.fixture(scope='module')
def toy_ckpt(tmp_path_factory):
    model = build_toy(8, seed=1)
    path = tmp_path_factory.mktemp('ckpt') / 'best.pth'
    torch.save(runner_checkpoint(model, 'evad_toy_ava_20240101_120000'),
               path)
    return str(path), model.state_dict()


@pytest.fixture(scope='module')
def recognizer_ckpt(tmp_path_factory):
    """A tiny EVADViT recogniser's checkpoint, as the runner saves it."""
    cfg = Config.fromfile(RECOGNIZER)
    cfg.model.backbone.update(img_size=64, embed_dims=32, depth=2,
                              num_heads=2, num_frames=4, prune_layers=(1, ))
    cfg.model.cls_head.update(in_channels=32, num_classes=5)
    with DefaultScope.overwrite_default_scope('mmaction'):
        model = MODELS.build(cfg.model)
    path = tmp_path_factory.mktemp('ckpt') / 'epoch_10.pth'
    torch.save(runner_checkpoint(
        model, 'evadvit_videomae-vitb_k400_20240101_120000', cfg.pretty_text),
        path)
    return str(path)


def test_runner_checkpoint_loads_completely(toy_ckpt, log_lines):
    path, state = toy_ckpt
    model = build_toy(8, seed=2)
    report = load_checkpoint(model, path)
    assert report.num_loaded == report.num_total == len(state)
    assert not (report.missing or report.unexpected or report.mismatched)
    assert report.meta['dataset_meta'] == dict(classes=('a', 'b'))
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key])
    lines = [m for m in log_lines if 'tensors from' in m]
    assert lines == [f'EVAD: loaded {len(state)}/{len(state)} tensors from '
                     f'{path}']


def test_foreign_checkpoint_is_refused_naming_its_config(
        recognizer_ckpt, log_lines):
    model = build_toy(8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as info:
        load_checkpoint(model, recognizer_ckpt)
    message = str(info.value)
    assert 'is not a checkpoint of this EVAD' in message
    assert 'configs/mixing/evadvit_videomae-vitb_k400.py' in message
    assert 'Recognizer3D (backbone EVADViT)' in message
    assert 'backbone (' in message and 'cls_head (' in message
    assert 'strict=False' in message
    assert len(message) < 800 and message.count('\n') == 0
    # refused before loading: nothing changed, nothing listed key by key
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not [m for m in log_lines if 'tensors from' in m]


def test_foreign_checkpoint_without_meta_is_described_by_its_keys(
        recognizer_ckpt, tmp_path):
    state = safe_torch_load(recognizer_ckpt)['state_dict']
    bare = tmp_path / 'weights.pth'
    torch.save({'module.' + k: v for k, v in state.items()}, bare)
    with pytest.raises(CheckpointMismatchError,
                       match=r'parts: backbone \(\d+\), cls_head \(2\)'):
        load_checkpoint(build_toy(8), bare)


def test_not_strict_loads_what_fits_with_one_warning(recognizer_ckpt,
                                                     log_lines):
    model = build_toy(8)
    report = load_checkpoint(model, recognizer_ckpt, strict=False)
    assert report.num_loaded < report.num_total / 2
    warnings = [m for m in log_lines if 'is not a checkpoint' in m]
    assert len(warnings) == 1 and 'evadvit_videomae-vitb_k400' in warnings[0]
    summary = [m for m in log_lines if 'tensors from' in m]
    assert len(summary) == 1
    # counts and the first three keys of each list, never all of them
    assert len(summary[0]) < 1000
    assert f'missing {len(report.missing)}: ' in summary[0]
    assert f'(+{len(report.missing) - 3})' in summary[0]


def test_partial_checkpoint(toy_ckpt, tmp_path):
    path, state = toy_ckpt
    state = dict(state)
    state.pop('neck.fpn.fpn_convs.0.conv.bias')
    state['rpn_head.init_proposal_bboxes.weight'] = torch.zeros(3, 4)
    partial = tmp_path / 'partial.pth'
    torch.save(dict(state_dict=state), partial)
    with pytest.raises(CheckpointMismatchError) as info:
        load_checkpoint(build_toy(8), partial)
    assert '2 weights could not be loaded' in str(info.value)
    assert 'neck.fpn.fpn_convs.0.conv.bias' in str(info.value)
    report = load_checkpoint(build_toy(8), partial, strict=False)
    assert report.missing == ['neck.fpn.fpn_convs.0.conv.bias']
    assert report.mismatched == [
        'rpn_head.init_proposal_bboxes.weight ((3, 4) vs (20, 4))']
    report = load_checkpoint(build_toy(8), partial,
                             may_miss=('neck.', 'rpn_head.'))
    assert report.num_loaded == report.num_total - 2


def test_class_count_adaptation_runs_through_the_loader(toy_ckpt, log_lines):
    """ContextRefinementHead re-initialises a classifier of another class
    count inside _load_from_state_dict: the strict load passes."""
    path, state = toy_ckpt
    model = build_toy(5)
    report = load_checkpoint(model, path)
    assert report.num_loaded == report.num_total
    assert any('re-initialised' in m for m in log_lines)
    key = 'backbone.blocks.0.norm1.weight'
    torch.testing.assert_close(model.state_dict()[key], state[key])


@pytest.mark.parametrize('nest', [None, 'model', 'state_dict', 'module',
                                  'model_state'])
def test_unwrap_nesting_module_prefix_and_prefix(nest):
    weights = {'module.backbone.a': torch.ones(1),
               'module.backbone.b.c': torch.zeros(2), 'head.d': torch.ones(3)}
    ckpt = weights if nest is None else {nest: weights, 'epoch': 3}
    assert list(unwrap_state_dict(ckpt)) == ['backbone.a', 'backbone.b.c',
                                             'head.d']
    assert list(unwrap_state_dict(ckpt, prefix='backbone')) == ['a', 'b.c']
    with pytest.raises(CheckpointMismatchError,
                       match="no keys starting with 'neck.'"):
        unwrap_state_dict(ckpt, prefix='neck.', source='x.pth')
    with pytest.raises(TypeError, match='not a state dict'):
        unwrap_state_dict([1, 2])
    with pytest.raises(TypeError, match='non-tensor entries 1: epoch'):
        unwrap_state_dict({'w': torch.ones(1), 'epoch': 3})


def test_unwrap_keeps_module_versions_with_the_keys():
    model = nn.Sequential(nn.BatchNorm1d(2))
    state = model.state_dict()
    ckpt = {'backbone.' + k: v for k, v in state.items()}
    ckpt = type(state)(ckpt)
    ckpt._metadata = {'backbone' + ('.' + k if k else ''): v
                      for k, v in state._metadata.items()}
    out = unwrap_state_dict(dict(state_dict=ckpt), prefix='backbone.')
    assert out._metadata == state._metadata


def test_authors_and_videomae_checkpoints_are_named(tmp_path):
    model = nn.Linear(4, 4)
    authors = tmp_path / 'authors.pth'
    torch.save({'model_state': {'det_head.mask_token': torch.ones(1)},
                'cfg': 'MODEL: {}'}, authors)
    with pytest.raises(CheckpointMismatchError,
                       match='official_evad_to_mm.py'):
        load_checkpoint(model, authors)
    videomae = tmp_path / 'videomae.pth'
    torch.save({'model': {'encoder.patch_embed.proj.weight': torch.ones(1)}},
               videomae)
    with pytest.raises(CheckpointMismatchError, match='videomae_to_mm.py'):
        load_checkpoint(model, videomae)


def test_missing_file_and_cached_url(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match='Checkpoint not found'):
        read_checkpoint(tmp_path / 'absent.pth')
    # an http(s) checkpoint is read (safely) from torch hub's cache
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path))
    os.makedirs(tmp_path / 'checkpoints')
    torch.save({'state_dict': {'w': torch.ones(2)}},
               tmp_path / 'checkpoints' / 'weights-1234.pth')
    ckpt = read_checkpoint('https://example.invalid/models/weights-1234.pth')
    assert torch.equal(ckpt['state_dict']['w'], torch.ones(2))


# ---------------------------------------------------------------------------
# weights_only loading
# ---------------------------------------------------------------------------
class _Payload:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'echo pwned > {shlex.quote(str(self.marker))}', )


@pytest.mark.parametrize('zipfile', [True, False])
def test_code_running_pickle_is_refused(tmp_path, zipfile):
    def save(marker, path):
        torch.save({'state_dict': {'w': torch.ones(1)},
                    'x': _Payload(marker)}, path,
                   _use_new_zipfile_serialization=zipfile)
        return path

    # the payload is real: unsafe loading runs it
    control = tmp_path / 'control_marker'
    torch.load(save(control, tmp_path / 'control.pth'), weights_only=False)
    assert control.read_text().strip() == 'pwned'

    marker = tmp_path / 'marker'
    path = save(marker, tmp_path / 'evil.pth')
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)
    with pytest.raises(UnsafeCheckpointError) as info:
        safe_torch_load(path)
    assert isinstance(info.value, pickle.UnpicklingError)
    message = str(info.value)
    assert 'weights_only=True' in message and 'system' in message
    assert 'malicious code' in message and 'trust' in message
    assert 'torch.load(f, weights_only=False)' in message
    assert 'state_dict' in message
    with open(path, 'rb') as f:  # file objects too
        with pytest.raises(UnsafeCheckpointError):
            safe_torch_load(f)
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(nn.Linear(1, 1), path)
    assert not marker.exists()


def test_safe_torch_load_reads_plain_state_dict(tmp_path):
    path = tmp_path / 'w.pth'
    torch.save(nn.Linear(2, 3).state_dict(), path)
    assert safe_torch_load(path)['weight'].shape == (3, 2)
    assert ckpt_utils.MIN_FIT == 0.5
