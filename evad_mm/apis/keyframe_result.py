"""The actors found in one keyframe, in pixels and with class names."""
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import numpy as np

__all__ = ['KeyframeResult']


def _numpy(tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy()


@dataclass
class KeyframeResult:
    """The actors EVAD found in one keyframe.

    Attributes:
        frame_index (int): The keyframe (0-based).
        time (float): Its time in seconds, ``frame_index / fps``.
        bboxes (np.ndarray): (n, 4) x1, y1, x2, y2 in pixels of the
            original frame.
        bboxes_normalized (np.ndarray): (n, 4) the same in [0, 1].
        scores (np.ndarray): (n, num_classes - 1) action probabilities;
            column j is class id j + 1 (mmaction2's unused column 0 is
            dropped).
        actor_scores (np.ndarray): (n, ) person scores.
        labels (list[list[str]]): Per box, the names of the classes scoring
            at least ``score_thr``, best first.
        label_ids (list[list[int]]): Their class ids.
        label_scores (list[list[float]]): Their scores.
        image_shape (tuple): (H, W) of the original frame.
    """
    frame_index: int
    time: float
    bboxes: np.ndarray
    bboxes_normalized: np.ndarray
    scores: np.ndarray
    actor_scores: np.ndarray
    labels: List[List[str]] = field(default_factory=list)
    label_ids: List[List[int]] = field(default_factory=list)
    label_scores: List[List[float]] = field(default_factory=list)
    image_shape: Tuple[int, int] = (0, 0)

    def __len__(self) -> int:
        return len(self.bboxes)

    def to_dict(self) -> dict:
        """Plain lists and numbers (JSON-serialisable)."""
        out = {}
        for key, value in self.__dict__.items():
            out[key] = value.tolist() if isinstance(value, np.ndarray) else \
                (list(value) if isinstance(value, tuple) else value)
        return out

    @classmethod
    def from_data_sample(cls, sample, label_names: Dict[int, str],
                         num_classes: int,
                         score_thr: float = 0.) -> 'KeyframeResult':
        """Convert a prediction of ``EVAD.test_step``.

        Args:
            sample (ActionDataSample): With ``pred_instances.bboxes`` (n, 4)
                normalised x1, y1, x2, y2, ``.scores`` (n, num_classes) and
                optionally ``.actor_scores`` (n, ) (all ones without), and
                the metainfo ``frame_index``, ``fps`` and ``ori_shape``
                (H, W) of the original frame.
            label_names (dict[int, str]): Names by class id; only these
                classes are listed in ``labels``.
            num_classes (int): Scored classes, mmaction2's unused column 0
                excluded (dropped from ``scores`` when present).
            score_thr (float): Smallest score listed in ``labels``.
        """
        pred = sample.pred_instances
        h, w = sample.metainfo['ori_shape']
        keyframe = int(sample.metainfo['frame_index'])
        norm = _numpy(pred.bboxes).reshape(-1, 4)
        scores = _numpy(pred.scores).reshape(len(norm), -1)
        if scores.shape[1] == num_classes + 1:
            scores = scores[:, 1:]
        actor = getattr(pred, 'actor_scores', None)
        actor = (np.ones(len(norm), np.float32) if actor is None else
                 _numpy(actor).reshape(-1))
        named = np.array(sorted(label_names)) - 1  # columns with a name
        labels, label_ids, label_scores = [], [], []
        for row in scores:
            order = named[np.argsort(-row[named], kind='stable')]
            order = order[row[order] >= score_thr]
            labels.append([label_names[j + 1] for j in order])
            label_ids.append([int(j + 1) for j in order])
            label_scores.append([float(row[j]) for j in order])
        return cls(
            frame_index=keyframe,
            time=keyframe / float(sample.metainfo['fps']),
            bboxes=(norm * np.array([w, h, w, h], np.float32)).astype(
                np.float32),
            bboxes_normalized=norm.astype(np.float32),
            scores=scores.astype(np.float32),
            actor_scores=actor.astype(np.float32),
            labels=labels,
            label_ids=label_ids,
            label_scores=label_scores,
            image_shape=(int(h), int(w)))
