"""The EVAD detector: one ViT, query-based actors, context refinement."""
import warnings
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmaction.utils import SampleList
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import bbox2roi
from mmengine.config import ConfigDict
from mmengine.model import BaseModel
from mmengine.structures import InstanceData
from torch import Tensor

from evad_mm.registry import MODELS
from evad_mm.utils.typing_utils import ConfigType, OptConfigType, OptMultiConfig


def sanitize_gt_boxes(boxes: Tensor, img_shape: Sequence[int],
                      key: str = '?') -> Tensor:
    """Indices of usable ground-truth boxes, after clipping in place.

    Boxes are clipped to the image; inverted, NaN and (after clipping)
    thinner-than-one-pixel boxes are dropped, with one warning naming the
    sample.

    Args:
        boxes (Tensor): (n, 4) pixel xyxy; clipped in place.
        img_shape (Sequence[int]): (H, W).
        key (str): Sample name for the warning (``img_key``).

    Returns:
        Tensor: (m, ) indices of the boxes to keep.
    """
    h, w = img_shape[:2]
    finite = torch.isfinite(boxes).all(1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
    keep = finite & (boxes[:, 2] - boxes[:, 0] >= 1) & (
        boxes[:, 3] - boxes[:, 1] >= 1)
    if not bool(keep.all()):
        warnings.warn(
            f'{key}: dropped {int((~keep).sum())} of {len(boxes)} ground-truth'
            ' boxes that are inverted, empty, non-finite or outside the '
            f'{w}x{h} frame; check the annotation file.')
    return keep.nonzero().flatten()


def _mmdet_scoped(cfg: ConfigType) -> ConfigDict:
    """mmdet heads build their children in the current scope: give them
    mmdet's unless the config chose one. mmdet reads ``train_cfg`` and
    ``test_cfg`` by attribute, hence a ``ConfigDict``."""
    cfg = ConfigDict(cfg)
    cfg.setdefault('_scope_', 'mmdet')
    return cfg


@MODELS.register_module()
class EVAD(BaseModel):
    """Efficient Video Action Detection (ICCV 2023), end to end.

    ``backbone`` encodes the clip (:class:`EVADViT`, or any backbone giving
    (B, C, t, h, w) maps); the keyframe maps go through ``neck`` (pyramid +
    FPN) to mmdet's Sparse R-CNN parts (``rpn_head``: ``EmbeddingRPNHead``,
    ``roi_head``: :class:`ActorLocalizationHead`) that find the actors; the
    ``action_head`` (:class:`ContextRefinementHead`) classifies their
    actions. Works on mmaction2's ``ActionDataSample`` as ``AVADataset`` and
    ``PackActionInputs`` give them: ``gt_instances.bboxes`` (n, 4) pixel
    xyxy and ``gt_instances.labels`` (n, num_classes) multi-hot; no
    proposals. Predictions are what ``AVAMetric`` reads: normalised
    ``bboxes`` and ``scores`` (n, num_classes).

    Args:
        backbone (dict): Backbone config.
        neck (dict): Keyframe pyramid config.
        rpn_head (dict): Learned proposals (mmdet scope by default).
        roi_head (dict): Actor localization (mmdet scope by default).
        action_head (dict): Action classification config.
        data_preprocessor (dict, optional): Usually
            ``ActionDataPreprocessor``.
        size_divisor (int): Inputs are zero-padded bottom/right to a
            multiple of this; boxes stay in unpadded pixels. Defaults to 32.
        train_cfg (dict, optional): ``add_gt_as_actors=True`` also trains
            the action head on the ground-truth boxes, besides the
            predicted boxes matched to them (EVAD trains on the matched
            boxes only, the default). Helps a localization trained from
            scratch, whose early boxes are poor.
        init_cfg (dict, optional): Defaults to None.
    """

    def __init__(self,
                 backbone: ConfigType,
                 neck: ConfigType,
                 rpn_head: ConfigType,
                 roi_head: ConfigType,
                 action_head: ConfigType,
                 data_preprocessor: OptConfigType = None,
                 size_divisor: int = 32,
                 train_cfg: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        if isinstance(data_preprocessor, dict):
            # mmaction2's preprocessors, whatever the current default scope
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.neck = MODELS.build(neck)
        self.rpn_head = MODELS.build(_mmdet_scoped(rpn_head))
        self.roi_head = MODELS.build(_mmdet_scoped(roi_head))
        self.action_head = MODELS.build(action_head)
        self.size_divisor = size_divisor
        self.train_cfg = dict(train_cfg or {})
        unknown = set(self.train_cfg) - {'add_gt_as_actors'}
        if unknown:
            raise ValueError(f'EVAD train_cfg has unknown keys {unknown}; '
                             "the only one is 'add_gt_as_actors'.")

    def extract_feat(self, inputs: Tensor) -> Tuple[Tuple[Tensor, ...], object]:
        """Backbone and neck.

        Args:
            inputs (Tensor): (B, C, T, H, W), H and W multiples of
                ``size_divisor``.

        Returns:
            tuple: FPN maps of the keyframe, and the backbone output for the
            action head (``EVADBackboneOutput`` or a (B, C, t, h, w) map).
        """
        feats = self.backbone(inputs)
        if hasattr(feats, 'keyframe_feats'):
            keyframe_maps = feats.keyframe_feats
        else:
            maps = tuple(feats) if isinstance(feats, (list, tuple)) else (
                feats, )
            if any(m.dim() != 5 for m in maps):
                raise TypeError(
                    'EVAD needs a backbone giving (B, C, t, h, w) maps (e.g. '
                    "mmaction2's VisionTransformer with return_feat_map=True)"
                    ' or EVADViT output.')
            keyframe_maps = tuple(m[:, :, m.shape[2] // 2] for m in maps)
            feats = maps[-1]
        return self.neck(keyframe_maps), feats

    def _pad(self, inputs: Tensor) -> Tensor:
        """Zero-pad H and W to multiples of ``size_divisor``."""
        pad_h = -inputs.shape[-2] % self.size_divisor
        pad_w = -inputs.shape[-1] % self.size_divisor
        if pad_h or pad_w:
            inputs = F.pad(inputs, (0, pad_w, 0, pad_h))
        return inputs

    @staticmethod
    def _person_samples(data_samples: SampleList, inputs: Tensor,
                        with_gt: bool = True) -> List[DetDataSample]:
        """mmdet samples: gt boxes with the single class 'person' (0);
        unusable gt boxes are dropped from ``data_samples`` too."""
        samples = []
        for sample in data_samples:
            metainfo = dict(sample.metainfo)
            metainfo.setdefault('img_shape', tuple(inputs.shape[-2:]))
            metainfo['batch_input_shape'] = tuple(inputs.shape[-2:])
            det = DetDataSample(metainfo=metainfo)
            if with_gt and 'gt_instances' in sample:
                gt = sample.gt_instances
                keep = sanitize_gt_boxes(gt.bboxes, metainfo['img_shape'],
                                         metainfo.get('img_key', '?'))
                if len(keep) < len(gt):
                    sample.gt_instances = gt = gt[keep]
                boxes = gt.bboxes
                det.gt_instances = InstanceData(
                    bboxes=boxes,
                    labels=torch.zeros(
                        len(boxes), dtype=torch.long, device=boxes.device))
            samples.append(det)
        return samples

    def loss(self, inputs: Tensor, data_samples: SampleList) -> dict:
        """Localization losses ``s{i}.loss_*`` and action losses
        ``d{j}.loss_action``.

        Args:
            inputs (Tensor): (B, C, T, H, W) normalised clips.
            data_samples (list[ActionDataSample]): with ``gt_instances``.
        """
        inputs = self._pad(inputs)
        det_samples = self._person_samples(data_samples, inputs)
        fpn_maps, feats = self.extract_feat(inputs)
        _, proposals = self.rpn_head.loss_and_predict(fpn_maps, det_samples)
        losses, actors = self.roi_head.loss_and_actors(fpn_maps, proposals,
                                                       det_samples)
        if self.train_cfg.get('add_gt_as_actors', False):
            actors = [
                InstanceData(
                    bboxes=torch.cat([a.bboxes, s.gt_instances.bboxes]),
                    gt_inds=torch.cat([
                        a.gt_inds,
                        torch.arange(
                            len(s.gt_instances), device=a.gt_inds.device)
                    ])) for a, s in zip(actors, data_samples)
            ]
        rois = bbox2roi([a.bboxes for a in actors])
        labels = torch.cat([
            s.gt_instances.labels[a.gt_inds]
            for s, a in zip(data_samples, actors)
        ]).float()
        img_shapes = [s.metainfo['img_shape'] for s in det_samples]
        losses.update(
            self.action_head.loss(feats, rois, labels, img_shapes))
        return losses

    def predict(self, inputs: Tensor, data_samples: SampleList) -> SampleList:
        """Detect actors and score their actions.

        Returns:
            list[ActionDataSample]: each with ``pred_instances.bboxes``
            (n, 4) normalised to [0, 1] of the frame, ``.scores``
            (n, num_classes) and ``.actor_scores`` (n, ) person scores.
        """
        inputs = self._pad(inputs)
        det_samples = self._person_samples(data_samples, inputs, False)
        fpn_maps, feats = self.extract_feat(inputs)
        proposals = self.rpn_head.predict(fpn_maps, det_samples)
        actors = self.roi_head.predict_actors(fpn_maps, proposals,
                                              det_samples)
        rois = bbox2roi([a.bboxes for a in actors])
        img_shapes = [s.metainfo['img_shape'] for s in det_samples]
        scores = self.action_head.predict(feats, rois, img_shapes)
        scores = scores.split([len(a.bboxes) for a in actors])
        for sample, actor, score, shape in zip(data_samples, actors, scores,
                                               img_shapes):
            h, w = shape[:2]
            scale = actor.bboxes.new_tensor([w, h, w, h])
            sample.pred_instances = InstanceData(
                bboxes=(actor.bboxes / scale).clamp(0, 1),
                scores=score,
                actor_scores=actor.scores)
        return data_samples

    def _forward(self,
                 inputs: Tensor,
                 data_samples: Optional[SampleList] = None) -> Tuple[Tensor]:
        """Tensor-only inference (FLOP counting, export): boxes in input
        pixels and action probabilities, each (B, n, ...)."""
        if data_samples is None:
            data_samples = [
                DetDataSample(metainfo=dict(img_shape=inputs.shape[-2:]))
                for _ in range(len(inputs))
            ]
        results = self.predict(inputs, data_samples)
        return tuple(
            torch.cat([r.pred_instances.bboxes, r.pred_instances.scores], 1)
            for r in results)

    def forward(self,
                inputs: Tensor,
                data_samples: Optional[SampleList] = None,
                mode: str = 'tensor') -> Union[dict, SampleList, tuple]:
        """Dispatch on ``mode``: 'loss', 'predict' or 'tensor'."""
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self._forward(inputs, data_samples)
        raise RuntimeError(f"Invalid mode {mode!r}: use 'loss', 'predict' or "
                           "'tensor'.")
