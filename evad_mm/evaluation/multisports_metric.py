"""mmaction2's MultiSports evaluation for AVA-style action scores."""
from typing import Any, Sequence, Tuple

import numpy as np
from mmaction.evaluation import MultiSportsMetric
from mmaction.evaluation.functional import multisports_utils

from evad_mm.registry import METRICS


def _tube_iou(tube_a: np.ndarray,
              tube_b: np.ndarray,
              spatialonly: bool = False,
              temporalonly: bool = False) -> float:
    """Spatio-temporal IoU of two tubes, (n, 5) rows ``frame, x1, y1, x2,
    y2`` sorted by frame: the temporal IoU of their frame spans times the
    mean per-frame box IoU over the shared span (``iou3d_voc``), as
    mmaction2's ``iou3dt_voc`` defines it. Written without converting
    1-element arrays with ``int()``, which numpy >= 2.4 refuses."""
    first = max(tube_a[0, 0], tube_b[0, 0])
    last = min(tube_a[-1, 0], tube_b[-1, 0])
    if last < first:
        return 0.0
    span = max(tube_a[-1, 0], tube_b[-1, 0]) - min(tube_a[0, 0], tube_b[0, 0])
    temporal = (last - first) / span if span > 0 else 1.0
    if temporalonly:
        return float(temporal)
    shared = [t[(t[:, 0] >= first) & (t[:, 0] <= last)] for t in (tube_a,
                                                                  tube_b)]
    spatial = multisports_utils.iou3d_voc(*shared)
    return float(spatial if spatialonly else spatial * temporal)


def patch_multisports_tube_iou() -> bool:
    """Make mmaction2's MultiSports video-mAP work on numpy >= 2.4: replace
    ``multisports_utils.iou3dt_voc`` with :func:`_tube_iou` if the installed
    one fails on two plain tubes. Idempotent; returns whether it patched."""
    tube = np.array([[1, 0, 0, 4, 4], [2, 0, 0, 4, 4]], np.float32)
    try:
        multisports_utils.iou3dt_voc(tube, tube)
        return False
    except TypeError:
        multisports_utils.iou3dt_voc = _tube_iou
        return True


patch_multisports_tube_iou()


@METRICS.register_module()
class AVAStyleMultiSportsMetric(MultiSportsMetric):
    """mmaction2's ``MultiSportsMetric`` for models whose action scores
    follow the AVA convention: column 0 unused, action ids from 1.

    ``MultiSportsMetric`` reads the ground-truth pickle (``labels``,
    ``gttubes``, ``test_videos``, ...), takes each box's highest-scoring
    column as its 0-based label index and reports frame-mAP and video-mAP
    (``frameAP``, ``v_map@...``). EVAD's ``scores`` have ``len(labels) + 1``
    columns (column 0 is always 0), as ``AVADataset`` and the converted
    annotations of ``tools/data/tube_gt_to_ava.py`` (action id = label
    index + 1) use them. This metric drops column 0 and evaluates the rest
    unchanged. (Importing this module also fixes mmaction2's video-mAP for
    numpy >= 2.4, see :func:`patch_multisports_tube_iou`.)

    Args:
        ann_file (str): The ground-truth pickle, e.g.
            ``multisports_GT.pkl``.
        metric_options, collect_device, verbose, prefix: as for
            ``MultiSportsMetric``.
    """

    def process(self, data_batch: Sequence[Tuple[Any, dict]],
                data_samples: Sequence[dict]) -> None:
        """Store each sample's boxes and scores without column 0."""
        num_labels = len(self.annos['labels'])
        shifted = []
        for sample in data_samples:
            pred = sample['pred_instances']
            scores = pred['scores']
            if scores.ndim != 2 or scores.shape[1] != num_labels + 1:
                raise ValueError(
                    f'AVAStyleMultiSportsMetric: scores of '
                    f'{sample["video_id"]} have shape '
                    f'{tuple(scores.shape)}, expected (n, {num_labels + 1}):'
                    f' the ground truth has {num_labels} labels plus the '
                    f'unused column 0; set the model\'s num_classes to '
                    f'{num_labels + 1}')
            shifted.append(
                dict(
                    video_id=sample['video_id'],
                    timestamp=sample['timestamp'],
                    pred_instances=dict(
                        bboxes=pred['bboxes'].detach().clone(),
                        scores=scores[:, 1:].detach().clone())))
        super().process(data_batch, shifted)

    def compute_metrics(self, results: list) -> dict:
        """Check the video names, then evaluate as ``MultiSportsMetric``."""
        test_videos = set(self.annos['test_videos'][0])
        unknown = sorted({r[0] for r in results} - test_videos)
        if unknown:
            raise ValueError(
                f'AVAStyleMultiSportsMetric: {len(unknown)} predicted '
                f'video(s) are not in the ground truth\'s test_videos[0], '
                f'e.g. {unknown[:3]}; evaluate the split the metric\'s '
                'ann_file describes (its test videos)')
        return super().compute_metrics(results)

