"""The EVAD detector through mmaction2's data preprocessor."""
import math

import pytest
import torch
from mmengine.config import Config

from evad_mm.registry import MODELS
from tests.conftest import REPO, action_samples, toy_model_cfg


def build_toy(seed=0, **overrides):
    torch.manual_seed(seed)
    model = MODELS.build(toy_model_cfg(**overrides))
    model.init_weights()
    return model


def batch(num_boxes, size=(64, 96), **kwargs):
    samples = action_samples(num_boxes, size=size, **kwargs)
    inputs = [
        torch.randint(0, 256, (3, 8, *size), dtype=torch.uint8)
        for _ in num_boxes
    ]
    return dict(inputs=inputs, data_samples=samples)


@pytest.mark.parametrize('num_boxes', [[2, 1], [0, 3], [0, 0]])
def test_loss_and_backward(num_boxes):
    model = build_toy().train()
    data = model.data_preprocessor(batch(num_boxes), training=True)
    losses = model(**data, mode='loss')
    assert 's0.loss_cls' in losses and 's2.loss_iou' in losses
    assert 'd1.loss_action' in losses
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    assert model.backbone.blocks[0].attn.qkv.weight.grad is not None


def test_predict_gives_what_ava_metric_reads():
    model = build_toy().eval()
    data = model.data_preprocessor(batch([1, 2], size=(70, 90)))
    with torch.no_grad():
        results = model(**data, mode='predict')
    for r in results:
        pred = r.pred_instances
        assert pred.bboxes.shape[1] == 4 and len(pred.bboxes) >= 1
        assert pred.bboxes.min() >= 0 and pred.bboxes.max() <= 1
        assert pred.scores.shape == (len(pred.bboxes), 8)
        assert torch.all(pred.scores[:, 0] == 0)
        assert r.video_id and r.timestamp == 901


def test_inputs_are_padded_to_the_size_divisor():
    model = build_toy().eval()
    with torch.no_grad():
        fpn, _ = model.extract_feat(model._pad(torch.randn(1, 3, 8, 70, 90)))
    assert fpn[0].shape[-2:] == (96 // 4, 96 // 4)


def plain_vit_cfg():
    """mmaction2's VisionTransformer with return_feat_map=True."""
    cfg = toy_model_cfg()
    cfg['backbone'] = dict(
        type='VisionTransformer', img_size=64, embed_dims=128, depth=2,
        num_heads=4, num_frames=8, use_mean_pooling=False,
        return_feat_map=True)
    cfg['neck']['scale_factors'] = (1, )
    cfg['neck']['fpn'] = dict(type='FPN')
    cfg['roi_head']['bbox_roi_extractor']['featmap_strides'] = [16]
    return cfg


def test_plain_feature_map_backbone():
    model = MODELS.build(plain_vit_cfg())
    model.init_weights()
    data = model.data_preprocessor(batch([1, 1]), training=True)
    losses = model(**data, mode='loss')
    sum(v for k, v in losses.items() if 'loss' in k).backward()


@pytest.mark.parametrize('backbone', ['EVADViT', 'VisionTransformer'])
def test_actor_roi_features_are_read_from_the_right_memory(backbone):
    """mmcv's RoIAlign reads raw NCHW memory: on the channels-last maps a
    token reshape gives, it silently returns other pixels' features."""
    torch.manual_seed(0)
    model = MODELS.build(
        toy_model_cfg() if backbone == 'EVADViT' else plain_vit_cfg())
    model.init_weights()
    model.eval()
    rois = torch.tensor([[0., 4., 6., 40., 50.], [1., 30., 2., 60., 30.]])
    with torch.no_grad():
        fpn, _ = model.extract_feat(torch.randn(2, 3, 8, 64, 64))
        extractor = model.roi_head.bbox_roi_extractor[0]
        got = extractor(fpn, rois)
        want = extractor(tuple(x.contiguous() for x in fpn), rois)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_tiny_evad_overfits_two_clips():
    model = build_toy(seed=1).train()
    data = model.data_preprocessor(batch([1, 2], seed=3), training=True)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    first = None
    for step in range(40):
        losses = model(**data, mode='loss')
        total = sum(v for k, v in losses.items() if 'loss' in k)
        if first is None:
            first = total.item()
        optim.zero_grad()
        total.backward()
        optim.step()
    assert total.item() < first / 2, (first, total.item())


@pytest.mark.parametrize('name', [
    'evad_vitb_ava.py', 'evad_vitb_ava_rho1.0.py',
    'evad_vitb_ava_rho0.6_wkf4.py', 'evad_vitb_ava_short224.py',
    'evad_vitb_ava_short256.py', 'evad_vitl_ava.py', 'evad_toy_ava.py'
])
def test_configs_parse(name):
    cfg = Config.fromfile(f'{REPO}/configs/{name}')
    assert cfg.model.type == 'EVAD'
    assert cfg.default_scope == 'mmaction'
    assert cfg.custom_imports['imports'] == ['evad_mm']


def test_keep_rate_from_cfg_options():
    cfg = Config.fromfile(f'{REPO}/configs/evad_vitb_ava.py')
    cfg.merge_from_dict({'model.backbone.keep_rate': 0.6})
    assert cfg.model.backbone.keep_rate == 0.6
    assert math.isclose(
        Config.fromfile(f'{REPO}/configs/evad_vitb_ava_rho1.0.py')
        .model.backbone.keep_rate, 1.0)


def test_full_vitb_config_trains_and_predicts_one_step():
    """configs/evad_vitb_ava.py's whole model (no pretrained download),
    on a small clip to stay fast on a CPU."""
    cfg = Config.fromfile(f'{REPO}/configs/evad_vitb_ava.py')
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    num_params = sum(p.numel() for p in model.parameters())
    assert 150e6 < num_params < 220e6  # paper, Table 1a: 185M
    samples = action_samples([2], size=(96, 96), num_classes=81)
    data = dict(
        inputs=[torch.randint(0, 256, (3, 16, 96, 96), dtype=torch.uint8)],
        data_samples=samples)
    model.train()
    losses = model(**model.data_preprocessor(data, training=True),
                   mode='loss')
    assert len([k for k in losses if 'loss' in k]) == 6 * 3 + 6
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    model.eval()
    with torch.no_grad():
        pred = model(**model.data_preprocessor(data), mode='predict')
    assert pred[0].pred_instances.scores.shape[1] == 81


@pytest.mark.parametrize('add_gt', [False, True])
def test_add_gt_as_actors(add_gt, monkeypatch):
    cfg = toy_model_cfg()
    cfg['train_cfg'] = dict(add_gt_as_actors=add_gt)
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    seen = {}
    loss = model.action_head.loss

    def spy(feats, rois, labels, img_shapes=None):
        seen['rois'], seen['labels'] = rois, labels
        return loss(feats, rois, labels, img_shapes)

    monkeypatch.setattr(model.action_head, 'loss', spy)
    data = model.data_preprocessor(batch([2, 1]), training=True)
    model(**data, mode='loss')
    # Hungarian matching gives every ground truth exactly one box
    assert len(seen['rois']) == (6 if add_gt else 3)
    gt = torch.cat([s.gt_instances.labels for s in data['data_samples']])
    if add_gt:
        assert torch.equal(seen['labels'][2:4], gt[:2])


def test_unknown_train_cfg_key():
    cfg = toy_model_cfg()
    cfg['train_cfg'] = dict(add_gt_as_actor=True)
    with pytest.raises(ValueError, match='add_gt_as_actors'):
        MODELS.build(cfg)


def test_bad_ground_truth_boxes_are_clipped_or_dropped():
    model = build_toy().train()
    data = batch([3, 1])
    boxes = data['data_samples'][0].gt_instances.bboxes
    boxes[0] = torch.tensor([50., 10., 20., 40.])  # inverted
    boxes[1] = torch.tensor([-30., -5., 200., 300.])  # out of frame
    boxes[2] = torch.tensor([10., 10., 10., 30.])  # zero area
    data = model.data_preprocessor(data, training=True)
    with pytest.warns(UserWarning, match=r'v0,0901: dropped 2 of 3'):
        losses = model(**data, mode='loss')
    assert all(torch.isfinite(v) for k, v in losses.items() if 'loss' in k)
    kept = data['data_samples'][0].gt_instances
    assert len(kept) == 1
    assert kept.bboxes.tolist() == [[0., 0., 96., 64.]]


def test_invalid_loss_hook_names_the_term():
    from evad_mm.engine.hooks import InvalidLossHook

    class FakeRunner:
        iter = 6

    hook = InvalidLossHook()
    outputs = dict(loss=torch.tensor(float('nan')),
                   **{'s1.loss_iou': torch.tensor(float('inf')),
                      's1.loss_cls': torch.tensor(0.5),
                      's1.pos_acc': torch.tensor(float('nan'))})
    with pytest.raises(FloatingPointError, match=r"s1.loss_iou.*iteration 7|"
                       r"iteration 7.*s1.loss_iou"):
        hook.after_train_iter(FakeRunner(), 0, outputs=outputs)
    hook.after_train_iter(FakeRunner(), 0,
                          outputs=dict(loss=torch.tensor(1.)))


def _kept_by_rule(boxes, scores, test_cfg):
    """Query indices ``roi_head.test_cfg`` keeps in one clip, by hand: the
    K best for ``num_actors``, else those passing ``score_thr`` (all if none
    does), then torchvision's NMS; in query order."""
    from torchvision.ops import nms
    if test_cfg.get('num_actors'):
        return scores.topk(test_cfg['num_actors']).indices.sort().values
    assert test_cfg.get('max_per_img', len(scores)) >= len(scores)
    keep = (scores >= test_cfg['score_thr']).nonzero().flatten()
    if len(keep) == 0:
        keep = torch.arange(len(scores))
    if test_cfg.get('nms'):
        keep = keep[nms(boxes[keep], scores[keep],
                        test_cfg['nms']['iou_threshold'])]
    return keep.sort().values


@pytest.mark.parametrize('test_cfg', [
    None,  # the toy config's: score_thr 0.3 and an NMS
    dict(score_thr='median'),
    dict(score_thr='median', nms=dict(type='nms', iou_threshold=0.3)),
    dict(num_actors=3),
    dict(num_actors=20),  # every query
])
def test_forward_tensors_is_predict_before_the_actor_rule(test_cfg):
    model = build_toy().eval()
    data = model.data_preprocessor(batch([1, 2], size=(70, 90)))
    inputs = data['inputs']
    with torch.no_grad():
        boxes, person_scores, action_scores = model.forward_tensors(inputs)
        num_queries = model.rpn_head.num_proposals
        assert boxes.shape == (2, num_queries, 4)
        assert person_scores.shape == (2, num_queries)
        assert action_scores.shape == (2, num_queries, 8)
        assert torch.all(action_scores[..., 0] == 0)
        if test_cfg is not None:
            test_cfg = dict(test_cfg)
            if test_cfg.get('score_thr') == 'median':
                # some boxes pass in the first clip
                test_cfg['score_thr'] = float(person_scores[0].median())
            model.roi_head.test_cfg = test_cfg
        results = model(**data, mode='predict')
    test_cfg = dict(model.roi_head.test_cfg)
    scale = boxes.new_tensor([90, 70, 90, 70])
    for i, result in enumerate(results):
        keep = _kept_by_rule(boxes[i], person_scores[i], test_cfg)
        pred = result.pred_instances
        torch.testing.assert_close(pred.bboxes,
                                   (boxes[i, keep] / scale).clamp(0, 1))
        torch.testing.assert_close(pred.actor_scores, person_scores[i, keep])
        if test_cfg.get('num_actors') == num_queries:
            # the same boxes in the same order: the same action scores
            assert torch.equal(pred.scores, action_scores[i])
    if test_cfg.get('score_thr') is not None and 'nms' not in test_cfg:
        assert 0 < len(results[0].pred_instances) < num_queries


def test_tensor_mode_traces_and_replays():
    """``forward(mode='tensor')`` is :meth:`forward_tensors`, and its trace
    holds no branch on tensor values: replayed on another clip it gives
    what the model gives."""
    model = build_toy().eval()
    first, second = torch.randn(2, 1, 3, 8, 70, 90)
    with torch.no_grad():
        outs = model(second)
        for got, want in zip(outs, model.forward_tensors(second)):
            assert torch.equal(got, want)
        traced = torch.jit.trace(model, (first, ), check_trace=False)
        for got, want in zip(traced(second), outs):
            torch.testing.assert_close(got, want)


def _attention_flags(model):
    from evad_mm.models.layers.transformer import Attention
    return {
        name: m.fused_attn
        for name, m in model.named_modules() if isinstance(m, Attention)
    }


def test_set_fused_attn_switches_encoder_and_decoder():
    model = build_toy().eval()
    inputs = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        fused = model.forward_tensors(inputs)
        model.set_fused_attn(False)
        flags = _attention_flags(model)
        assert any(n.startswith('backbone.') for n in flags)
        assert any(n.startswith('action_head.') for n in flags)
        assert not any(flags.values())
        eager = model.forward_tensors(inputs)
        model.set_fused_attn(True)
        assert all(_attention_flags(model).values())
    for f, e in zip(fused, eager):
        torch.testing.assert_close(f, e, rtol=1e-4, atol=1e-4)


def test_set_keep_rate():
    model = build_toy()
    model.set_keep_rate(0.5)
    assert model.backbone.keep_rate == (0.5, 0.5, 0.5)
    model.set_keep_rate([0.4, 0.6, 0.8])
    assert model.backbone.keep_rate == (0.4, 0.6, 0.8)
    model.set_keep_rate([0.9])
    assert model.backbone.keep_rate == (0.9, 0.9, 0.9)
    with pytest.raises(ValueError, match=r'\(0, 1\]'):
        model.set_keep_rate(1.5)
    with pytest.raises(ValueError, match='one per prune layer'):
        model.set_keep_rate([0.5, 0.5])


def test_controls_on_a_backbone_without_them():
    """mmaction2's ViT: no pruning, no attention switch."""
    model = MODELS.build(plain_vit_cfg())
    with pytest.raises(ValueError,
                       match='backbone VisionTransformer has no keep_rate'):
        model.set_keep_rate(0.5)
    with pytest.warns(UserWarning,
                      match='backbone VisionTransformer has no '
                      'set_fused_attn'):
        model.set_fused_attn(False)
    assert not any(_attention_flags(model).values())  # the decoder's
