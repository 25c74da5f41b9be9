"""Stop training on a NaN or infinite loss, naming the loss term."""
import math
from typing import Optional

from mmdet.engine.hooks import CheckInvalidLossHook
from mmengine.runner import Runner

from evad_mm.registry import HOOKS


@HOOKS.register_module()
class InvalidLossHook(CheckInvalidLossHook):
    """mmdet's ``CheckInvalidLossHook`` that checks every logged loss term.

    Raises ``FloatingPointError`` naming the terms that are not finite (for
    example ``s3.loss_iou``), with the iteration, instead of an assertion
    without a message.

    Args:
        interval (int): Check every ``interval`` iterations. Defaults to 1.
    """

    def __init__(self, interval: int = 1) -> None:
        super().__init__(interval=interval)

    def after_train_iter(self,
                         runner: Runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        if not outputs or not self.every_n_train_iters(runner, self.interval):
            return
        values = {
            name: float(value.detach() if hasattr(value, 'detach') else value)
            for name, value in outputs.items() if 'loss' in name
        }
        bad = {
            name: value
            for name, value in values.items() if not math.isfinite(value)
        }
        if bad:
            raise FloatingPointError(
                f'Non-finite loss at iteration {runner.iter + 1}: {bad}. '
                'Lower the learning rate, enable gradient clipping '
                '(optim_wrapper.clip_grad) or check the annotations of this '
                'batch.')
