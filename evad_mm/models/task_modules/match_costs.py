"""Match costs for EVAD's actor localization."""
from typing import Optional

from mmdet.models.task_modules.assigners.match_cost import BaseMatchCost
from mmengine.structures import InstanceData
from torch import Tensor

from evad_mm.registry import TASK_UTILS


@TASK_UTILS.register_module()
class SigmoidClassificationCost(BaseMatchCost):
    """Cost ``-weight * sigmoid(logit)`` of the ground-truth class.

    EVAD's matcher uses the negative person probability. mmdet's
    ``ClassificationCost`` applies a softmax, which is constant for a
    single-class sigmoid head; this is its sigmoid counterpart.

    Args:
        weight (float): Cost weight. Defaults to 1.
    """

    def __call__(self,
                 pred_instances: InstanceData,
                 gt_instances: InstanceData,
                 img_meta: Optional[dict] = None,
                 **kwargs) -> Tensor:
        """Return the (num_preds, num_gts) cost of ``pred_instances.scores``
        (num_preds, num_classes) logits against ``gt_instances.labels``."""
        probs = pred_instances.scores.sigmoid()
        return -probs[:, gt_instances.labels] * self.weight
