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
from evad_mm.utils.device import check_mmcv_cuda_ops
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
            scratch, whose early boxes are poor. ``normalize_losses=True``
            divides every loss weight (``roi_head.stage_loss_weights``,
            ``action_head.loss_weight``) by the number of loss terms: 3 per
            localization stage (class, L1, GIoU) and 1 per decoder block,
            as the authors do (24 for ViT-B, 30 for ViT-L).
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
        if getattr(self.backbone, 'pruning', None) == 'unified' and getattr(
                self.action_head, 'token_order', None) == 'reference':
            raise ValueError(
                "action_head.token_order='reference' places the first h*w "
                'tokens as the keyframe, which backbone.pruning=\'unified\' '
                "does not keep: use token_order='position' (the default).")
        self.size_divisor = size_divisor
        self.train_cfg = dict(train_cfg or {})
        unknown = set(self.train_cfg) - {'add_gt_as_actors',
                                         'normalize_losses'}
        if unknown:
            raise ValueError(f'EVAD train_cfg has unknown keys {unknown}; '
                             "the keys are 'add_gt_as_actors' and "
                             "'normalize_losses'.")
        if self.train_cfg.get('normalize_losses', False):
            num_terms = (3 * self.roi_head.num_stages +
                         len(self.action_head.blocks))
            self.roi_head.stage_loss_weights = [
                w / num_terms for w in self.roi_head.stage_loss_weights
            ]
            self.action_head.loss_weight = (
                self.action_head.loss_weight / num_terms)

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

    def _features_and_queries(self, inputs: Tensor,
                              data_samples: SampleList) -> tuple:
        """Pad, encode, and run every learned query through the
        localization stages (inference).

        Returns:
            tuple: ``det_samples`` (mmdet samples with ``img_shape``), the
            backbone output for the action head, boxes (B, Q, 4) in input
            pixels and person scores (B, Q), in query order.
        """
        inputs = self._pad(inputs)
        det_samples = self._person_samples(data_samples, inputs, False)
        fpn_maps, feats = self.extract_feat(inputs)
        proposals = self.rpn_head.predict(fpn_maps, det_samples)
        boxes, scores = self.roi_head.predict_queries(fpn_maps, proposals,
                                                      det_samples)
        return det_samples, feats, boxes, scores

    def predict(self, inputs: Tensor, data_samples: SampleList) -> SampleList:
        """Detect actors and score their actions.

        The actors are the queries ``roi_head.test_cfg`` keeps (see
        :meth:`ActorLocalizationHead.select_actors`).

        Returns:
            list[ActionDataSample]: each with ``pred_instances.bboxes``
            (n, 4) normalised to [0, 1] of the frame, ``.scores``
            (n, num_classes) and ``.actor_scores`` (n, ) person scores.
        """
        det_samples, feats, boxes, person_scores = \
            self._features_and_queries(inputs, data_samples)
        actors = [
            self.roi_head.select_actors(b, s)
            for b, s in zip(boxes, person_scores)
        ]
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

    def forward_tensors(self, inputs: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Tensor-only inference of every query, for FLOP counting, tracing
        and export.

        Unlike :meth:`predict`, no query is dropped: all Q =
        ``rpn_head.num_proposals`` go to the action head (no threshold, no
        NMS, no fallback; ``roi_head.test_cfg`` is not used), so the output
        shapes depend on the input shape only and no Python branch depends
        on tensor values. To get :meth:`predict`'s actors, apply the
        ``test_cfg`` rule to ``person_scores``; with
        ``test_cfg.num_actors=Q`` the action scores are :meth:`predict`'s.

        Args:
            inputs (Tensor): (B, C, T, H, W) normalised clips, any H and W
                (zero-padded inside to multiples of ``size_divisor``).

        Returns:
            tuple[Tensor]:

            - boxes (B, Q, 4): pixel xyxy in the unpadded H x W frame
              (clipped to it only if the box coder clips; :meth:`predict`
              clamps its normalised boxes to [0, 1]).
            - person_scores (B, Q): float32 scores of the last
              localization stage.
            - action_scores (B, Q, num_classes): probabilities, column 0
              zero.
        """
        img_shape = tuple(inputs.shape[-2:])
        samples = [
            DetDataSample(metainfo=dict(img_shape=img_shape))
            for _ in range(len(inputs))
        ]
        _, feats, boxes, person_scores = self._features_and_queries(
            inputs, samples)
        action_scores = self.action_head.predict(
            feats, bbox2roi(list(boxes)), [img_shape] * len(inputs))
        return boxes, person_scores, action_scores.view(
            *boxes.shape[:2], -1)

    def set_keep_rate(self, keep_rate: Union[float, Sequence[float]]) -> None:
        """Set the backbone's token keep rate rho; takes effect at the next
        forward pass, weights unchanged.

        Args:
            keep_rate (float | Sequence[float]): One rate in (0, 1], or one
                per pruning layer.

        Raises:
            ValueError: The backbone prunes no tokens (has no
                ``keep_rate``, e.g. mmaction2's ViT or ResNet3d), or a rate
                is out of range.
        """
        if not isinstance(getattr(type(self.backbone), 'keep_rate', None),
                          property):
            raise ValueError(
                f'EVAD.set_keep_rate: the backbone '
                f'{type(self.backbone).__name__} has no keep_rate (no token '
                'pruning); only EVADViT takes a keep rate.')
        if isinstance(keep_rate, (list, tuple)) and len(keep_rate) == 1:
            keep_rate = keep_rate[0]
        self.backbone.keep_rate = keep_rate

    def set_fused_attn(self, fused: bool) -> None:
        """Fused (``F.scaled_dot_product_attention``) or eager attention in
        the encoder and the action decoder; same results up to rounding.

        The pruning blocks of :class:`EVADViT` always rank tokens on an
        eager attention map. A backbone or action head without a
        ``set_fused_attn`` method (mmaction2's ViT, ResNet3d) computes its
        attention as built; one warning names it.

        Args:
            fused (bool): True for the fused kernel, False for eager
                matmul-softmax-matmul.
        """
        for name in ('backbone', 'action_head'):
            module = getattr(self, name)
            if callable(getattr(module, 'set_fused_attn', None)):
                module.set_fused_attn(bool(fused))
            else:
                warnings.warn(
                    f'EVAD.set_fused_attn: the {name} '
                    f'{type(module).__name__} has no set_fused_attn(); its '
                    'attention (if any) stays as built.')

    def _set_device(self, device: torch.device) -> None:
        """Called by ``to()`` / ``cuda()`` before anything moves: a CUDA
        device needs mmcv's CUDA ops (a clear error, not mmcv's from deep
        inside the first RoI head)."""
        check_mmcv_cuda_ops(device)
        super()._set_device(device)

    def forward(self,
                inputs: Tensor,
                data_samples: Optional[SampleList] = None,
                mode: str = 'tensor') -> Union[dict, SampleList, tuple]:
        """Dispatch on ``mode``: 'loss' (:meth:`loss`), 'predict'
        (:meth:`predict`) or 'tensor' (:meth:`forward_tensors`; any
        ``data_samples`` are not used)."""
        check_mmcv_cuda_ops(inputs.device)
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.forward_tensors(inputs)
        raise RuntimeError(f"Invalid mode {mode!r}: use 'loss', 'predict' or "
                           "'tensor'.")
