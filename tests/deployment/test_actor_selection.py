"""The exported actor rule (a fixed-shape mask) keeps exactly the queries
``ActorLocalizationHead.select_actors`` keeps, in PyTorch and in
onnxruntime."""
import io

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope

from evad_mm.deployment.actor_selection import actor_mask, check_nms_cfg
from evad_mm.registry import MODELS
from tests.conftest import toy_model_cfg

NUM_QUERIES = 20

RULES = [
    dict(score_thr=0.5),
    dict(score_thr=2.0),  # none passes: every query
    dict(score_thr=0.3, max_per_img=8),
    dict(score_thr=0.9, max_per_img=8),  # none of the 8 best passes
    dict(score_thr=0.3, nms=dict(type='nms', iou_threshold=0.5)),
    dict(score_thr=0.0, nms=dict(type='nms', iou_threshold=0.2)),
    dict(score_thr=0.4, nms=dict(type='nms', iou_threshold=0.3, offset=1)),
    dict(score_thr=0.1, max_per_img=12,
         nms=dict(type='nms', iou_threshold=0.4, score_threshold=0.3,
                  max_num=3)),
    dict(num_actors=1),
    dict(num_actors=7),
    dict(num_actors=NUM_QUERIES),
]


@pytest.fixture(scope='module')
def roi_head():
    with DefaultScope.overwrite_default_scope('mmaction'):
        return MODELS.build(toy_model_cfg()).roi_head


def random_queries(seed, batch=3, size=(64, 96)):
    """Boxes that overlap a lot (NMS has work) and distinct scores."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    xy = torch.rand(batch, NUM_QUERIES, 2, generator=g) * \
        torch.tensor([w * .5, h * .5])
    wh = torch.rand(batch, NUM_QUERIES, 2, generator=g) * \
        torch.tensor([w * .5, h * .5]) + 4
    scores = torch.rand(batch, NUM_QUERIES, generator=g)
    return torch.cat([xy, xy + wh], -1), scores


def kept_by_head(roi_head, boxes, scores, rule):
    """(B, Q) mask of what ``select_actors`` keeps."""
    roi_head.test_cfg = dict(rule)
    mask = torch.zeros_like(scores, dtype=torch.bool)
    for i in range(len(scores)):
        actors = roi_head.select_actors(boxes[i], scores[i])
        for box in actors.bboxes:
            mask[i] |= (boxes[i] == box).all(1)
    return mask


@pytest.mark.parametrize('rule', RULES)
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_mask_is_select_actors(roi_head, rule, seed):
    boxes, scores = random_queries(seed)
    want = kept_by_head(roi_head, boxes, scores, rule)
    got = actor_mask(boxes, scores, rule)
    assert torch.equal(got, want)
    assert got.any(1).all()


class RuleGraph(torch.nn.Module):

    def __init__(self, rule):
        super().__init__()
        self.rule = rule

    def forward(self, boxes, scores):
        return actor_mask(boxes, scores, self.rule)


@pytest.mark.parametrize('rule', RULES)
@pytest.mark.filterwarnings('ignore::torch.jit.TracerWarning')
def test_onnxruntime_applies_the_same_rule(roi_head, rule):
    """One export per rule, replayed by onnxruntime on other queries."""
    import onnxruntime as ort
    boxes, scores = random_queries(100)
    buffer = io.BytesIO()
    torch.onnx.export(
        RuleGraph(rule), (boxes, scores),
        buffer,
        dynamo=False,
        opset_version=17,
        input_names=['boxes', 'scores'])
    session = ort.InferenceSession(
        buffer.getvalue(), providers=['CPUExecutionProvider'])
    names = {i.name for i in session.get_inputs()}  # boxes: NMS only
    for seed in range(5):
        boxes, scores = random_queries(seed)
        feed = dict(boxes=boxes.numpy(), scores=scores.numpy())
        got, = session.run(None, {k: v for k, v in feed.items()
                                  if k in names})
        want = kept_by_head(roi_head, boxes, scores, rule).numpy()
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize('nms_cfg, message', [
    (dict(type='soft_nms', iou_threshold=0.5), "'nms' only"),
    (dict(type='nms', iou_threshold=0.5, sigma=0.5), "['sigma']"),
    (dict(type='nms'), 'iou_threshold'),
])
def test_unsupported_nms_is_a_clear_error(nms_cfg, message):
    with pytest.raises(ValueError, match=message.replace('[', r'\[')):
        check_nms_cfg(nms_cfg)


def test_too_many_actors_is_an_error():
    boxes, scores = random_queries(0)
    with pytest.raises(ValueError, match='exceeds the 20 queries'):
        actor_mask(boxes, scores, dict(num_actors=21))
