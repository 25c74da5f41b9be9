"""Messy input, walked end to end: every bad value gets an error naming the
problem and the fix; odd-but-valid input works; checkpoints never run code.
(Component tests cover more cases; this file walks the user-facing ones.)"""
import os
import pickle

import numpy as np
import pytest
import torch

from evad_mm.registry import MODELS
from tests.conftest import action_samples, toy_model_cfg

VIT = dict(type='EVADViT', img_size=64, embed_dims=32, depth=4, num_heads=4,
           num_frames=8, prune_layers=(1, 2), out_indices=(0, 1, 2, 3))


@pytest.mark.parametrize('cfg, match', [
    (dict(VIT, keep_rate=0.), r'keep_rate=0.0: every rate must lie in \(0, 1\]'),
    (dict(VIT, keep_rate=(0.7, )), 'one per prune layer'),
    (dict(VIT, prune_layers=(1, 4)), r'prune_layers.*\[0, depth=4\)'),
    (dict(VIT, out_indices=(3, 1)), 'out_indices.*sorted'),
    (dict(VIT, embed_dims=30), 'divisible by num_heads'),
    (dict(VIT, keyframe_weight=-1.), 'keyframe_weight must be > 0'),
    (dict(VIT, num_frames=9), 'multiple of tubelet_size'),
    (dict(type='ContextRefinementHead', embed_dims=100, num_heads=6),
     'divisible by num_heads'),
    (dict(type='ExtendedRoIExtractor3D', extend_ratio=(-0.4, 0.2)),
     'non-negative'),
])
def test_config_errors_name_the_argument(cfg, match):
    with pytest.raises(ValueError, match=match):
        MODELS.build(cfg)


@pytest.mark.parametrize('shape, match', [
    ((1, 4, 8, 64, 64), 'input channels'),
    ((1, 3, 4, 64, 64), 'num_frames=8'),
    ((1, 3, 8, 10, 64), 'smaller than one 16x16 patch'),
])
def test_forward_errors_name_the_problem(shape, match):
    model = MODELS.build(VIT)
    with pytest.raises(ValueError, match=match):
        model(torch.randn(*shape))


def test_odd_clip_sizes_work_and_boxes_come_back_in_the_frame():
    torch.manual_seed(0)
    model = MODELS.build(toy_model_cfg())
    model.init_weights()
    model.eval()
    samples = action_samples([1], size=(250, 333))
    data = dict(inputs=[torch.randint(0, 256, (3, 8, 250, 333),
                                      dtype=torch.uint8)],
                data_samples=samples)
    with torch.no_grad():
        out = model(**model.data_preprocessor(data), mode='predict')
    boxes = out[0].pred_instances.bboxes
    assert len(boxes) and boxes.min() >= 0 and boxes.max() <= 1


def test_all_empty_batch_trains_with_finite_losses():
    torch.manual_seed(0)
    model = MODELS.build(toy_model_cfg())
    model.init_weights()
    samples = action_samples([0, 0])
    data = dict(inputs=[torch.randint(0, 256, (3, 8, 64, 96),
                                      dtype=torch.uint8) for _ in samples],
                data_samples=samples)
    losses = model(**model.data_preprocessor(data, True), mode='loss')
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()


class _Payload:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def test_backbone_init_cfg_refuses_code_running_checkpoints(tmp_path):
    marker = tmp_path / 'pwned'
    bad = tmp_path / 'bad.pth'
    with open(bad, 'wb') as f:
        pickle.dump({'state_dict': _Payload(marker)}, f)
    model = MODELS.build(dict(
        VIT, init_cfg=dict(type='Pretrained', checkpoint=str(bad))))
    with pytest.raises(pickle.UnpicklingError, match='arbitrary code'):
        model.init_weights()
    assert not marker.exists()


def test_backbone_pretrained_loads_lists_and_fails_on_partial(tmp_path,
                                                             caplog):
    source = MODELS.build(VIT)
    source.init_weights()
    state = {f'backbone.{k}': v for k, v in source.state_dict().items()
             if not k.startswith('norm.')}
    state['cls_head.fc_cls.weight'] = torch.zeros(3, 32)
    good = tmp_path / 'recogniser.pth'
    torch.save({'state_dict': state}, good)
    model = MODELS.build(dict(VIT, init_cfg=dict(
        type='Pretrained', checkpoint=str(good), prefix='backbone.')))
    model.init_weights()  # norm may be missing (recognisers have fc_norm)
    torch.testing.assert_close(model.blocks[2].attn.qkv.weight,
                               source.blocks[2].attn.qkv.weight)
    del state['backbone.blocks.3.mlp.layers.1.weight']
    partial = tmp_path / 'partial.pth'
    torch.save({'state_dict': state}, partial)
    model = MODELS.build(dict(VIT, init_cfg=dict(
        type='Pretrained', checkpoint=str(partial), prefix='backbone.')))
    with pytest.raises(RuntimeError,
                       match=r'1 weights could not be loaded.*blocks.3.mlp'):
        model.init_weights()
    model = MODELS.build(dict(VIT, init_cfg=dict(
        type='Pretrained', checkpoint=str(good), prefix='encoder.')))
    with pytest.raises(RuntimeError, match='no keys starting with'):
        model.init_weights()


def test_missing_frame_names_the_path(tmp_path):
    from mmaction.datasets.transforms import RawFrameDecode
    results = dict(frame_dir=str(tmp_path / 'video'),
                   frame_inds=np.array([1]),
                   filename_tmpl='img_{:05}.jpg', modality='RGB', offset=0)
    with pytest.raises(Exception, match='img_00001.jpg'):
        RawFrameDecode()(results)


def test_head_class_count_must_match_the_labels():
    torch.manual_seed(0)
    cfg = toy_model_cfg()
    model = MODELS.build(cfg)
    model.init_weights()
    samples = action_samples([1], num_classes=81)  # an AVA label vector
    data = dict(inputs=[torch.randint(0, 256, (3, 8, 64, 96),
                                      dtype=torch.uint8)],
                data_samples=samples)
    with pytest.raises(ValueError, match='num_classes=8'):
        model(**model.data_preprocessor(data, True), mode='loss')
