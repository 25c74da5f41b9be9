"""ActorLocalizationHead: which boxes inference keeps."""
import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from evad_mm.registry import MODELS
from tests.conftest import toy_model_cfg

BOXES = torch.tensor([[0., 0., 40., 40.], [1., 1., 41., 41.],
                      [50., 50., 90., 90.], [0., 0., 39., 42.]])
SCORES = torch.tensor([0.9, 0.8, 0.6, 0.2])


def kept(monkeypatch, **test_cfg):
    head = MODELS.build(toy_model_cfg()).roi_head
    head.test_cfg = dict(max_per_img=20, **test_cfg)
    monkeypatch.setattr(
        head, 'predict_bbox', lambda *args, **kwargs: [
            InstanceData(bboxes=BOXES.clone(), scores=SCORES.clone())
        ])
    actors, = head.predict_actors((), [None], [DetDataSample()])
    return actors.scores.tolist()


@pytest.mark.parametrize('test_cfg,scores', [
    (dict(score_thr=0.5), [0.9, 0.8, 0.6]),
    (dict(score_thr=0.95), [0.9, 0.8, 0.6, 0.2]),  # none passes: all kept
    (dict(score_thr=0.1, nms=dict(type='nms', iou_threshold=0.5)), [0.9, 0.6]),
    (dict(score_thr=0.5, nms=dict(iou_threshold=0.99)), [0.9, 0.8, 0.6]),
])
def test_score_threshold_and_optional_nms(monkeypatch, test_cfg, scores):
    assert kept(monkeypatch, **test_cfg) == pytest.approx(scores)
