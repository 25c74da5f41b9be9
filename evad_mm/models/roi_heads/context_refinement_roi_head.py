"""EVAD's action head behind proposals, for mmaction2's two-stage detectors."""
from typing import List, Tuple, Union

import torch
from mmaction.models.roi_heads import AVARoIHead
from mmdet.models.task_modules.samplers import SamplingResult
from mmdet.structures.bbox import bbox2roi
from mmengine.structures import InstanceData
from torch import Tensor

from evad_mm.registry import MMDET_MODELS, MODELS
from evad_mm.utils.typing_utils import ConfigType, InstanceList


@MODELS.register_module()
@MMDET_MODELS.register_module()
class ContextRefinementRoIHead(AVARoIHead):
    """mmaction2's ``AVARoIHead`` with :class:`ContextRefinementHead`.

    For stock two-stage AVA detectors (mmdet's ``FastRCNN`` with person
    proposals from a file): proposals are assigned and sampled as
    ``AVARoIHead`` does (``MaxIoUAssignerAVA``, ``RandomSampler``), then the
    context refinement head classifies them from the backbone's
    (B, C, T, H, W) map. ``bbox_roi_extractor`` (e.g.
    ``ExtendedRoIExtractor3D``) becomes the head's RoI extractor. Negative
    samples get all-zero action targets. Predictions are what ``AVAMetric``
    reads: normalised ``bboxes`` and ``scores`` (n, num_classes).

    Args:
        bbox_roi_extractor (dict): RoI extractor of the head.
        bbox_head (dict): A ``ContextRefinementHead`` config.
        train_cfg, test_cfg, init_cfg: as for ``AVARoIHead``.
    """

    def init_bbox_head(self, bbox_roi_extractor: ConfigType,
                       bbox_head: ConfigType) -> None:
        """Build the head with ``bbox_roi_extractor`` as its extractor."""
        bbox_head = dict(bbox_head, roi_extractor=bbox_roi_extractor)
        self.bbox_head = MODELS.build(bbox_head)
        self.bbox_roi_extractor = self.bbox_head.roi_extractor

    def bbox_loss(self, x: Union[Tensor, Tuple[Tensor]],
                  sampling_results: List[SamplingResult],
                  batch_img_metas: List[dict], **kwargs) -> dict:
        """Action losses ``d{j}.loss_action`` of the sampled proposals.

        The targets are the multi-hot labels (n, num_classes) of the matched
        ground truth for positives and zeros for negatives. A clip without
        ground-truth boxes has only negatives (mmaction2's assigner then
        gives 1-D labels, which are not used).
        """
        rois = bbox2roi([res.priors for res in sampling_results])
        num_classes = self.bbox_head.num_classes
        labels = []
        for res in sampling_results:
            pos = res.pos_gt_labels.float()
            if not len(res.pos_priors):
                pos = pos.new_zeros(0, num_classes)
            labels += [pos, pos.new_zeros(len(res.neg_priors), num_classes)]
        img_shapes = [meta['img_shape'] for meta in batch_img_metas]
        return dict(
            loss_bbox=self.bbox_head.loss(x, rois, torch.cat(labels),
                                          img_shapes))

    def predict_bbox(self, x: Union[Tensor, Tuple[Tensor]],
                     batch_img_metas: List[dict],
                     rpn_results_list: InstanceList,
                     rcnn_test_cfg: ConfigType) -> InstanceList:
        """Score every proposal: ``bboxes`` (n, 4) normalised to [0, 1],
        ``scores`` (n, num_classes)."""
        proposals = [res.bboxes for res in rpn_results_list]
        img_shapes = [meta['img_shape'] for meta in batch_img_metas]
        scores = self.bbox_head.predict(x, bbox2roi(proposals), img_shapes)
        results = []
        for boxes, score, (h, w) in zip(
                proposals, scores.split([len(p) for p in proposals]),
                img_shapes):
            scale = boxes.new_tensor([w, h, w, h])
            results.append(
                InstanceData(bboxes=(boxes / scale).clamp(0, 1),
                             scores=score))
        return results
