"""ActorLocalizationHead: every query through the stages, and which boxes
inference keeps."""
import pytest
import torch
from mmdet.structures import DetDataSample

from evad_mm.registry import MODELS
from tests.conftest import toy_model_cfg

BOXES = torch.tensor([[0., 0., 40., 40.], [1., 1., 41., 41.],
                      [50., 50., 90., 90.], [0., 0., 39., 42.]])
SCORES = torch.tensor([0.9, 0.8, 0.6, 0.2])


def toy_head(**test_cfg):
    head = MODELS.build(toy_model_cfg()).roi_head
    head.test_cfg = dict(test_cfg)
    return head


def kept(scores=SCORES, **test_cfg):
    actors = toy_head(**test_cfg).select_actors(BOXES.clone(), scores.clone())
    return actors.scores.tolist()


@pytest.mark.parametrize('test_cfg,scores', [
    (dict(max_per_img=20, score_thr=0.5), [0.9, 0.8, 0.6]),
    # none passes: all kept
    (dict(max_per_img=20, score_thr=0.95), [0.9, 0.8, 0.6, 0.2]),
    (dict(max_per_img=20, score_thr=0.1,
          nms=dict(type='nms', iou_threshold=0.5)), [0.9, 0.6]),
    (dict(max_per_img=20, score_thr=0.5, nms=dict(iou_threshold=0.99)),
     [0.9, 0.8, 0.6]),
    # the best max_per_img first, then the threshold
    (dict(max_per_img=2, score_thr=0.1), [0.9, 0.8]),
    (dict(max_per_img=3, score_thr=0.95), [0.9, 0.8, 0.6]),
    (dict(), [0.9, 0.8]),  # EVAD's default: 0.7
])
def test_score_threshold_and_optional_nms(test_cfg, scores):
    assert kept(**test_cfg) == pytest.approx(scores)


def test_num_actors_keeps_the_best_in_query_order():
    scores = torch.tensor([0.2, 0.9, 0.5, 0.7])
    # no threshold: scores far below score_thr are kept too
    assert kept(scores, num_actors=2, score_thr=0.95) == pytest.approx(
        [0.9, 0.7])
    assert kept(scores, num_actors=3) == pytest.approx([0.9, 0.5, 0.7])
    actors = toy_head(num_actors=4).select_actors(BOXES, scores)
    assert torch.equal(actors.bboxes, BOXES)  # all: unchanged order


@pytest.mark.parametrize('test_cfg,match', [
    (dict(num_actors=2, nms=dict(iou_threshold=0.5)), 'drop one of them'),
    (dict(num_actors=0), 'positive integer'),
    (dict(num_actors=2.5), 'positive integer'),
    (dict(num_actors=5), 'exceeds the 4 queries'),
    (dict(num_actor=2), "unknown keys \\['num_actor'\\]"),
])
def test_bad_test_cfg(test_cfg, match):
    with pytest.raises(ValueError, match=match):
        kept(**test_cfg)


def test_predict_queries_is_predict_bbox_in_query_order():
    """Every query's last-stage box and person score, as mmdet's
    ``predict_bbox`` (which returns them in top-k order) gives them."""
    torch.manual_seed(0)
    model = MODELS.build(toy_model_cfg())
    model.init_weights()
    model.eval()
    inputs = torch.randn(2, 3, 8, 64, 96)
    samples = [
        DetDataSample(
            metainfo=dict(img_shape=(64, 90), batch_input_shape=(64, 96)))
        for _ in range(2)
    ]
    head = model.roi_head
    with torch.no_grad():
        fpn, _ = model.extract_feat(inputs)
        boxes, scores = head.predict_queries(
            fpn, model.rpn_head.predict(fpn, samples), samples)
        results = head.predict_bbox(
            fpn, [s.metainfo for s in samples],
            model.rpn_head.predict(fpn, samples), head.test_cfg)
    num_queries = model.rpn_head.num_proposals
    assert boxes.shape == (2, num_queries, 4)
    assert scores.shape == (2, num_queries)
    assert scores.dtype == torch.float32
    for b, s, r in zip(boxes, scores, results):
        order = s.argsort(descending=True)
        mine = r.scores.argsort(descending=True)
        torch.testing.assert_close(s[order], r.scores[mine])
        torch.testing.assert_close(b[order], r.bboxes[mine])


def test_one_class_only():
    cfg = toy_model_cfg()
    cfg['roi_head']['bbox_head']['num_classes'] = 2  # one dict, all stages
    model = MODELS.build(cfg)
    samples = [DetDataSample(metainfo=dict(img_shape=(64, 64)))]
    with torch.no_grad():
        fpn, _ = model.extract_feat(torch.randn(1, 3, 8, 64, 64))
        with pytest.raises(ValueError, match='one class'):
            model.roi_head.predict_queries(
                fpn, model.rpn_head.predict(fpn, samples), samples)
