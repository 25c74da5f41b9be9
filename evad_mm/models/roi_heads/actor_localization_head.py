"""Query-based actor localization: mmdet's Sparse R-CNN RoI head for EVAD."""
from typing import Tuple

import torch
from mmcv.ops import batched_nms
from mmdet.models.roi_heads import SparseRoIHead
from mmdet.models.utils import unpack_gt_instances
from mmdet.structures import SampleList
from mmdet.structures.bbox import bbox2roi
from mmengine.structures import InstanceData
from torch import Tensor

from evad_mm.registry import MMDET_MODELS
from evad_mm.utils.typing_utils import InstanceList

TEST_CFG_KEYS = ('max_per_img', 'score_thr', 'nms', 'num_actors')


@MMDET_MODELS.register_module()
class ActorLocalizationHead(SparseRoIHead):
    """mmdet's ``SparseRoIHead`` that also hands its actors to EVAD.

    Training returns, with the usual per-stage losses (``s{i}.loss_*``), the
    last stage's boxes that the Hungarian assigner matched to a ground-truth
    person, so that the action head is trained on the same match.

    Inference runs all stages on every query (:meth:`predict_queries`), then
    :meth:`select_actors` applies ``test_cfg`` to each clip, one of two
    rules:

    * By score (EVAD): the ``max_per_img`` highest-scoring queries, of which
      those whose person score reaches ``score_thr`` (0.7 in EVAD) are kept,
      all of them when none does, with no NMS: the set prediction removes
      duplicates once trained long enough. ``nms`` (mmdet's form, e.g.
      ``dict(type='nms', iou_threshold=0.5)``) adds an NMS over the kept
      boxes, for models trained briefly (e.g. the toy config).
    * A fixed number (``num_actors=K``): exactly the K highest-scoring
      queries, whatever their scores (no threshold, no fallback), for
      reproducible FLOP counts, benchmarks and fixed-shape export.
      ``score_thr`` and ``max_per_img`` are then unused; ``nms`` would make
      the count data-dependent again, so giving both is an error.

    Kept boxes stay in query order.

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

    def predict_queries(self, x: Tuple[Tensor],
                        rpn_results_list: InstanceList,
                        batch_data_samples: SampleList
                        ) -> Tuple[Tensor, Tensor]:
        """Every query through all stages, no selection (tensor-only).

        Args:
            x (tuple[Tensor]): FPN maps.
            rpn_results_list (list[InstanceData]): Proposals with
                ``bboxes`` (Q, 4) and ``features`` (Q, C), Q the same for
                every sample (``EmbeddingRPNHead``).
            batch_data_samples (list[DetDataSample]): ``img_shape`` in the
                metainfo (boxes are clipped to it).

        Returns:
            tuple: last-stage boxes (B, Q, 4), pixel xyxy, and float32
            person scores (B, Q) (sigmoid, or softmax without the background
            column, as ``predict_bbox`` computes them), in query order.
        """
        if self.bbox_head[-1].num_classes != 1:
            raise ValueError(
                'ActorLocalizationHead localizes one class (person); set '
                f'num_classes=1 in its bbox_head, not '
                f'{self.bbox_head[-1].num_classes}.')
        batch_img_metas = [s.metainfo for s in batch_data_samples]
        proposal_list = [res.bboxes for res in rpn_results_list]
        object_feats = torch.stack(
            [res.features for res in rpn_results_list])
        for stage in range(self.num_stages):
            bbox_results = self._bbox_forward(stage, x,
                                              bbox2roi(proposal_list),
                                              object_feats, batch_img_metas)
            object_feats = bbox_results['object_feats']
            proposal_list = bbox_results['detached_proposals']
        # (B, Q, 1) or (B, Q, 2); ranked in float32 also under autocast
        cls_score = bbox_results['cls_score'].float()
        if self.bbox_head[-1].loss_cls.use_sigmoid:
            scores = cls_score[..., 0].sigmoid()
        else:
            scores = cls_score.softmax(-1)[..., 0]
        return torch.stack(proposal_list), scores

    def _actor_test_cfg(self) -> dict:
        """``test_cfg`` (None: EVAD's rule), checked for a clear error."""
        test_cfg = dict(self.test_cfg or {})
        unknown = set(test_cfg) - set(TEST_CFG_KEYS)
        if unknown:
            raise ValueError(
                f'ActorLocalizationHead test_cfg has unknown keys '
                f'{sorted(unknown)}; known: {TEST_CFG_KEYS}.')
        num_actors = test_cfg.get('num_actors')
        if num_actors is None:
            return test_cfg
        if isinstance(num_actors, bool) or not isinstance(
                num_actors, int) or num_actors < 1:
            raise ValueError(f'test_cfg.num_actors={num_actors!r} must be a '
                             'positive integer (or None).')
        if test_cfg.get('nms') is not None:
            raise ValueError(
                'test_cfg sets both num_actors (a fixed count) and nms (which '
                'removes a data-dependent number of boxes); drop one of '
                'them.')
        return test_cfg

    def select_actors(self, boxes: Tensor, scores: Tensor) -> InstanceData:
        """The actors ``test_cfg`` keeps among one clip's queries.

        Args:
            boxes (Tensor): (Q, 4) pixel xyxy of every query.
            scores (Tensor): (Q, ) person scores.

        Returns:
            InstanceData: ``bboxes`` (n, 4) and ``scores`` (n, ), in query
            order.
        """
        test_cfg = self._actor_test_cfg()
        num_actors = test_cfg.get('num_actors')
        if num_actors is not None:
            if num_actors > len(scores):
                raise ValueError(
                    f'test_cfg.num_actors={num_actors} exceeds the '
                    f'{len(scores)} queries (rpn_head.num_proposals).')
            keep = scores.topk(num_actors).indices.sort().values
        else:
            keep = torch.arange(len(scores), device=scores.device)
            max_per_img = test_cfg.get('max_per_img')
            if max_per_img is not None and max_per_img < len(scores):
                keep = scores.topk(max_per_img).indices.sort().values
            passed = keep[scores[keep] >= test_cfg.get('score_thr', 0.7)]
            if len(passed):
                keep = passed
        boxes, scores = boxes[keep], scores[keep]
        nms_cfg = test_cfg.get('nms')
        if nms_cfg is not None:
            _, kept = batched_nms(boxes.float(), scores.float(),
                                  scores.new_zeros(len(scores)), nms_cfg)
            kept = kept.sort().values
            boxes, scores = boxes[kept], scores[kept]
        return InstanceData(bboxes=boxes, scores=scores)
