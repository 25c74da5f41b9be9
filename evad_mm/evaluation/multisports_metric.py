"""mmaction2's MultiSports evaluation for AVA-style action scores."""
from typing import Any, Sequence, Tuple

from mmaction.evaluation import MultiSportsMetric

from evad_mm.registry import METRICS


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
    unchanged. (mmaction2's video-mAP on numpy >= 2.4 needs
    :func:`evad_mm.compat.patch_multisports_tube_iou`, which ``import
    evad_mm`` applies.)

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
