"""EVAD's parts with mmaction2's backbones, detectors and recognisers, from
the configs under configs/mixing (shrunk for a CPU: same types, fewer
layers)."""
import copy

import pytest
import torch
from mmengine.config import Config
from mmengine.structures import InstanceData

from evad_mm.registry import MODELS
from tests.conftest import REPO, action_samples


def load(name):
    cfg = Config.fromfile(f'{REPO}/configs/mixing/{name}')
    model = copy.deepcopy(cfg.model)
    model.pop('init_cfg', None)
    model.backbone.pop('init_cfg', None)
    return model


def build(model_cfg):
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.init_weights()
    return model


def clips(frames, size=(64, 64), num_boxes=(2, ), num_classes=81):
    samples = action_samples(list(num_boxes), size=size,
                             num_classes=num_classes)
    for s in samples:
        gt = s.gt_instances.bboxes
        s.proposals = InstanceData(
            bboxes=torch.cat([gt, gt + 2]).clamp(0, size[0] - 1),
            scores=torch.ones(2 * len(gt)))
    inputs = [
        torch.randint(0, 256, (3, frames, *size), dtype=torch.uint8)
        for _ in num_boxes
    ]
    return dict(inputs=inputs, data_samples=samples)


def train_step_and_predict(model, data, num_classes=81):
    model.train()
    losses = model(**model.data_preprocessor(copy.deepcopy(data), True),
                   mode='loss')
    action = [k for k in losses if 'loss_action' in k]
    assert action, losses.keys()
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(data), mode='predict')
    for r in results:
        pred = r.pred_instances
        assert pred.scores.shape == (len(pred.bboxes), num_classes)
        assert 0 <= pred.bboxes.min() and pred.bboxes.max() <= 1
    return losses


def test_evad_heads_on_fastrcnn_with_slowonly():
    cfg = load('evad-heads_slowonly-r50_fastrcnn_ava.py')
    cfg.roi_head.bbox_head.update(embed_dims=32, depth=2, num_heads=2,
                                  hidden_channels=16)
    model = build(cfg)
    assert type(model).__name__ == 'FastRCNN'
    assert type(model.roi_head.bbox_roi_extractor).__name__ == \
        'ExtendedRoIExtractor3D'
    train_step_and_predict(model, clips(4))


def test_evad_heads_on_fastrcnn_with_videomae_vit():
    cfg = load('evad-heads_videomae-vitb_fastrcnn_ava.py')
    cfg.backbone.update(embed_dims=64, depth=2, num_heads=2, num_frames=4)
    cfg.roi_head.bbox_head.update(in_channels=64, embed_dims=32, depth=2,
                                  num_heads=2, hidden_channels=16)
    train_step_and_predict(build(cfg), clips(4))


def test_evad_detector_with_slowonly_stages():
    cfg = load('evad_slowonly-r50_ava.py')
    cfg.action_head.update(embed_dims=32, depth=2, num_heads=2,
                           hidden_channels=16)
    model = build(cfg)
    losses = train_step_and_predict(model, clips(4, num_boxes=(2, 0)))
    assert 's5.loss_iou' in losses


def test_evad_detector_with_mmaction_vit_feature_map():
    cfg = load('evad_videomae-vitb-featmap_ava.py')
    cfg.backbone.update(embed_dims=64, depth=2, num_heads=2, num_frames=4)
    cfg.neck.update(in_channels=64)
    cfg.action_head.update(in_channels=64, embed_dims=32, depth=2,
                           num_heads=2, hidden_channels=16)
    train_step_and_predict(build(cfg), clips(4))


def test_evad_heads_on_tiny_r3d_for_toy_data():
    cfg = load('evad-heads_r3d-tiny_toy_ava.py')
    model = build(cfg)
    assert type(model.backbone).__name__ == 'ResNet3dSlowOnly'
    num_classes = cfg.action_head.num_classes
    data = clips(8, size=(64, 80), num_boxes=(2, 1), num_classes=num_classes)
    losses = train_step_and_predict(model, data, num_classes)
    assert 's2.loss_iou' in losses
    # the losses reach the first layer of the CNN
    assert model.backbone.conv1.conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize('keep_rate', [1.0, 0.5])
def test_evadvit_in_recognizer3d(keep_rate):
    from mmaction.structures import ActionDataSample
    cfg = Config.fromfile(
        f'{REPO}/configs/mixing/evadvit_videomae-vitb_k400.py').model
    cfg.backbone.update(img_size=64, embed_dims=64, depth=4, num_heads=2,
                        num_frames=8, prune_layers=(1, 2),
                        keep_rate=keep_rate)
    cfg.cls_head.update(in_channels=64, num_classes=5)
    model = build(cfg)
    samples = []
    for label in (1, 3):
        s = ActionDataSample()
        s.set_gt_label(label)
        samples.append(s)
    data = dict(
        inputs=[torch.randint(0, 256, (1, 3, 8, 64, 64), dtype=torch.uint8)
                for _ in samples],
        data_samples=samples)
    model.train()
    losses = model(**model.data_preprocessor(copy.deepcopy(data), True),
                   mode='loss')
    losses['loss_cls'].backward()
    assert model.backbone.blocks[0].attn.qkv.weight.grad is not None
    model.eval()
    with torch.no_grad():
        out = model(**model.data_preprocessor(data), mode='predict')
    assert out[0].pred_score.shape == (5, )


def test_fastrcnn_trains_on_a_sample_without_ground_truth():
    """A batch in which one clip has proposals but no ground-truth box (an
    AVA keyframe whose proposals all are background): its proposals are all
    negatives with all-zero action targets."""
    cfg = load('evad-heads_slowonly-r50_fastrcnn_ava.py')
    cfg.roi_head.bbox_head.update(embed_dims=32, depth=2, num_heads=2,
                                  hidden_channels=16)
    model = build(cfg)
    data = clips(4, num_boxes=(2, 0))
    data['data_samples'][1].proposals = InstanceData(
        bboxes=torch.tensor([[4., 4., 30., 40.], [20., 8., 60., 60.]]),
        scores=torch.ones(2))
    model.train()
    losses = model(**model.data_preprocessor(data, True), mode='loss')
    action = [v for k, v in losses.items() if 'loss_action' in k]
    assert len(action) == 2 and all(torch.isfinite(v) for v in action)
    sum(action).backward()
    assert model.roi_head.bbox_head.classifiers[0][3].weight.grad is not None
