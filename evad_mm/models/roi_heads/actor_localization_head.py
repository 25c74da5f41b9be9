"""Query-based actor localization: mmdet's Sparse R-CNN RoI head for EVAD."""
from typing import Tuple

import torch
from mmcv.ops import batched_nms
from mmdet.models.roi_heads import SparseRoIHead
from mmdet.models.utils import unpack_gt_instances
from mmdet.structures import SampleList
from mmengine.structures import InstanceData
from torch import Tensor

from evad_mm.registry import MMDET_MODELS
from evad_mm.utils.typing_utils import InstanceList


@MMDET_MODELS.register_module()
class ActorLocalizationHead(SparseRoIHead):
    """mmdet's ``SparseRoIHead`` that also hands its actors to EVAD.

    Training returns, with the usual per-stage losses (``s{i}.loss_*``), the
    last stage's boxes that the Hungarian assigner matched to a ground-truth
    person, so that the action head is trained on the same match.
    Inference keeps the boxes whose person score reaches
    ``test_cfg.score_thr`` (0.7 in EVAD), all of them when none does, with
    no NMS: the set prediction removes duplicates once trained long enough.
    ``test_cfg.nms`` (mmdet's form, e.g. ``dict(type='nms',
    iou_threshold=0.5)``) adds an NMS over the kept boxes, for models
    trained briefly (e.g. the toy config).

    Arguments are those of ``SparseRoIHead``; use one class (person).
    """

    def loss_and_actors(self, x: Tuple[Tensor], rpn_results_list: InstanceList,
                        batch_data_samples: SampleList
                        ) -> Tuple[dict, InstanceList]:
        """Localization losses of all stages and the matched actors.

        Args:
            x (tuple[Tensor]): FPN maps.
            rpn_results_list (list[InstanceData]): Proposals with
                ``bboxes``, ``features`` and ``imgs_whwh``.
            batch_data_samples (list[DetDataSample]): ``gt_instances`` with
                ``bboxes`` (n, 4) pixel xyxy and ``labels`` (n, ) zeros.

        Returns:
            tuple: losses, and per sample an ``InstanceData`` with
            ``bboxes`` (m, 4) (detached last-stage boxes, pixels) and
            ``gt_inds`` (m, ) the matched ground-truth index.
        """
        batch_gt_instances, _, batch_img_metas = unpack_gt_instances(
            batch_data_samples)
        object_feats = torch.stack(
            [res.pop('features') for res in rpn_results_list])
        results_list = rpn_results_list
        losses = {}
        for stage in range(self.num_stages):
            bbox_results = self.bbox_loss(
                stage=stage,
                x=x,
                object_feats=object_feats,
                results_list=results_list,
                batch_img_metas=batch_img_metas,
                batch_gt_instances=batch_gt_instances)
            weight = self.stage_loss_weights[stage]
            for name, value in bbox_results['loss_bbox'].items():
                losses[f's{stage}.{name}'] = (
                    value * weight if 'loss' in name else value)
            object_feats = bbox_results['object_feats']
            results_list = bbox_results['results_list']
        actors = []
        for boxes, sampling in zip(bbox_results['detached_proposals'],
                                   bbox_results['sampling_results']):
            actors.append(
                InstanceData(
                    bboxes=boxes[sampling.pos_inds],
                    gt_inds=sampling.pos_assigned_gt_inds))
        return losses, actors

    def predict_actors(self, x: Tuple[Tensor], rpn_results_list: InstanceList,
                       batch_data_samples: SampleList) -> InstanceList:
        """Boxes (n, 4) in input pixels and person ``scores`` (n, )."""
        batch_img_metas = [s.metainfo for s in batch_data_samples]
        results_list = self.predict_bbox(
            x, batch_img_metas, rpn_results_list, self.test_cfg, rescale=False)
        score_thr = self.test_cfg.get('score_thr', 0.7)
        nms_cfg = self.test_cfg.get('nms')
        actors = []
        for results in results_list:
            keep = results.scores >= score_thr
            if not keep.any():
                keep = torch.ones_like(keep)
            boxes, scores = results.bboxes[keep], results.scores[keep]
            if nms_cfg is not None:
                _, kept = batched_nms(boxes, scores,
                                      scores.new_zeros(len(scores)), nms_cfg)
                boxes, scores = boxes[kept], scores[kept]
            actors.append(InstanceData(bboxes=boxes, scores=scores))
        return actors
