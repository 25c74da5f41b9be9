"""Run an EVAD ONNX file with numpy and onnxruntime only.

This module imports neither torch nor the rest of ``evad_mm``: copy this one
file next to an exported ``.onnx`` file to run it where only numpy and
onnxruntime are installed (load it by path, e.g. with
``importlib.util.spec_from_file_location``, or run it as a script).

The graph (see ``tools/deployment/export_onnx.py``) maps a normalised clip
batch (B, 3, T, H, W) to, for each of the Q learned queries, its box in
input pixels, its person score, its action probabilities and whether it is
an actor under the exported ``roi_head.test_cfg``. :class:`EVADOnnxRunner`
normalises uint8 clips, checks their shape against the exported one, runs
the graph and keeps the actors.

Example::

    runner = EVADOnnxRunner('evad_toy.onnx')
    clip = ...  # (3, T, H, W) uint8 RGB, as the config's test pipeline gives
    for actors in runner.detect(clip[None]):
        print(actors.bboxes, actors.actor_scores, actors.scores.argmax(1))

Script::

    python ort_runner.py MODEL.onnx [--clip CLIP.npy] [--threads N]
"""
import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

# metadata_props keys of the exported file
METADATA_KEY = 'evad_mm'
CONFIG_KEY = 'evad_mm.config'
FORMAT_VERSION = 1
INPUT_NAME = 'inputs'
OUTPUT_NAMES = ('boxes', 'person_scores', 'action_scores', 'actor_mask',
                'kept_tokens')
GRAPH_OPTIMIZATION_LEVELS = ('disable', 'basic', 'extended', 'all')


@dataclass
class ExportInfo:
    """What an exported file was made for, stored as JSON in its metadata.

    Attributes:
        input_shape (list): (B, 3, T, H, W) of the graph input; B is None
            for a dynamic batch axis.
        keep_rate (list[float]): The backbone's keep rate of each pruning
            layer, fixed in the graph (empty: no token pruning).
        num_proposals (int): Q, the learned queries (rows of each output).
        num_classes (int): Action score columns, mmaction2's unused
            column 0 included.
        test_cfg (dict): ``roi_head.test_cfg`` that ``actor_mask`` applies
            (``score_thr``, ``max_per_img``, ``nms``, ``num_actors``).
        mean (list[float]): Per-channel mean of the data preprocessor.
        std (list[float]): Per-channel standard deviation.
        to_rgb (bool): The preprocessor swaps channels (BGR to RGB).
        classes (list[str], optional): Class names of ids 1, 2, ...
        checkpoint (str, optional): File name of the exported weights.
        opset (int): ONNX opset of the graph.
        producer (str): What made the file (versions).
        format_version (int): Version of this metadata layout.
    """
    input_shape: List[Optional[int]]
    keep_rate: List[float]
    num_proposals: int
    num_classes: int
    test_cfg: dict
    mean: List[float]
    std: List[float]
    to_rgb: bool = False
    classes: Optional[List[str]] = None
    checkpoint: Optional[str] = None
    opset: int = 17
    producer: str = ''
    format_version: int = FORMAT_VERSION

    @property
    def clip_shape(self) -> Tuple[int, int, int, int]:
        """(3, T, H, W) of one clip."""
        return tuple(int(s) for s in self.input_shape[1:])

    @property
    def batch_size(self) -> Optional[int]:
        """Clips per run, None for a dynamic batch axis."""
        b = self.input_shape[0]
        return None if b is None else int(b)

    @property
    def score_thr(self) -> Optional[float]:
        """The person score threshold of the actor rule (None with
        ``num_actors``)."""
        if self.test_cfg.get('num_actors') is not None:
            return None
        return float(self.test_cfg.get('score_thr', 0.7))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> 'ExportInfo':
        data = json.loads(text)
        version = data.get('format_version')
        if version != FORMAT_VERSION:
            raise ValueError(
                f'EVAD ONNX metadata version {version!r} is not the '
                f'{FORMAT_VERSION} this runner reads; export the model again '
                'with this version of tools/deployment/export_onnx.py.')
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Actors:
    """The actors of one clip, as ``EVAD.predict`` gives them.

    Attributes:
        bboxes (np.ndarray): (n, 4) x1, y1, x2, y2 normalised to [0, 1] of
            the clip's H x W.
        scores (np.ndarray): (n, num_classes) action probabilities, column 0
            zero.
        actor_scores (np.ndarray): (n, ) person scores.
        query_index (np.ndarray): (n, ) which of the Q queries each is.
    """
    bboxes: np.ndarray
    scores: np.ndarray
    actor_scores: np.ndarray
    query_index: np.ndarray = field(default_factory=lambda: np.zeros(0, int))

    def __len__(self) -> int:
        return len(self.bboxes)


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as err:
        raise ImportError(
            'running an EVAD ONNX file needs onnxruntime: pip install -r '
            'requirements/deploy.txt (or pip install onnxruntime)') from err
    return onnxruntime


def session_options(intra_op_threads: Optional[int] = None,
                    graph_optimization: str = 'all'):
    """onnxruntime ``SessionOptions`` with the given thread count and graph
    optimisation level ('disable', 'basic', 'extended' or 'all')."""
    ort = _import_onnxruntime()
    if graph_optimization not in GRAPH_OPTIMIZATION_LEVELS:
        raise ValueError(
            f'graph_optimization={graph_optimization!r}: choose one of '
            f'{GRAPH_OPTIMIZATION_LEVELS}.')
    options = ort.SessionOptions()
    options.graph_optimization_level = {
        'disable': ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        'basic': ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        'extended': ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        'all': ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[graph_optimization]
    if intra_op_threads is not None:
        if intra_op_threads < 1:
            raise ValueError(
                f'intra_op_threads={intra_op_threads} must be >= 1.')
        options.intra_op_num_threads = int(intra_op_threads)
        options.inter_op_num_threads = 1
    return options


class EVADOnnxRunner:
    """An exported EVAD graph in an onnxruntime session.

    Args:
        path (str): The ``.onnx`` file.
        providers (Sequence[str], optional): onnxruntime execution
            providers. Defaults to the CPU provider.
        intra_op_threads (int, optional): Threads of one operator; None:
            onnxruntime's default (all cores).
        graph_optimization (str): onnxruntime's graph optimisation level,
            'disable', 'basic', 'extended' or 'all' (default).
    """

    def __init__(self,
                 path: str,
                 providers: Optional[Sequence[str]] = None,
                 intra_op_threads: Optional[int] = None,
                 graph_optimization: str = 'all') -> None:
        ort = _import_onnxruntime()
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f'ONNX file not found: {path}')
        self.path = path
        self.session = ort.InferenceSession(
            path,
            sess_options=session_options(intra_op_threads,
                                         graph_optimization),
            providers=list(providers or ['CPUExecutionProvider']))
        meta = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise ValueError(
                f'{path} has no {METADATA_KEY!r} metadata: it was not '
                'written by tools/deployment/export_onnx.py.')
        self.info = ExportInfo.from_json(meta[METADATA_KEY])
        self.config_text = meta.get(CONFIG_KEY, '')
        names = tuple(o.name for o in self.session.get_outputs())
        if names != OUTPUT_NAMES:
            raise ValueError(f'{path} has outputs {names}, expected '
                             f'{OUTPUT_NAMES}.')

    # ------------------------------------------------------------ inputs ---

    def check_clips(self, clips: np.ndarray) -> None:
        """Raise a ValueError unless ``clips`` is (B, 3, T, H, W) of the
        exported clip shape."""
        want = self.info.clip_shape
        if clips.ndim == 5 and tuple(clips.shape[1:]) == want:
            return
        name = os.path.basename(self.path)
        if clips.ndim != 5:
            raise ValueError(
                f'{name} takes (B, 3, T, H, W) clips, got an array of shape '
                f'{tuple(clips.shape)}.')
        t, h, w = clips.shape[2:]
        raise ValueError(
            f'{name} was exported for clips of (3, T, H, W) = {want}, got '
            f'{tuple(clips.shape[1:])}. The graph has a fixed clip size (its '
            'initial proposals and box clipping use the image size): export '
            f'again with --shape {t} {h} {w} for these clips, or resize the '
            f'frames to {want[2]}x{want[3]} (H x W).')

    def normalize(self, clips: np.ndarray) -> np.ndarray:
        """(B, 3, T, H, W) pixel values (uint8 or float) -> float32
        ``(x - mean) / std`` as the config's data preprocessor does."""
        clips = np.asarray(clips)
        self.check_clips(clips)
        if self.info.to_rgb:
            clips = clips[:, ::-1]
        mean = np.asarray(self.info.mean, np.float32).reshape(1, -1, 1, 1, 1)
        std = np.asarray(self.info.std, np.float32).reshape(1, -1, 1, 1, 1)
        return ((clips.astype(np.float32) - mean) / std).astype(np.float32)

    # --------------------------------------------------------------- run ---

    def run(self, inputs: np.ndarray) -> Dict[str, np.ndarray]:
        """Run the graph on normalised clips.

        Args:
            inputs (np.ndarray): (B, 3, T, H, W) float32, any B: a graph
                with a fixed batch size runs in chunks of it (the last one
                zero-padded).

        Returns:
            dict: ``boxes`` (B, Q, 4) input pixels, ``person_scores``
            (B, Q), ``action_scores`` (B, Q, num_classes), ``actor_mask``
            (B, Q) bool and ``kept_tokens`` (B, M) int64, the (t, h, w)
            grid positions of the tokens the backbone kept.
        """
        inputs = np.ascontiguousarray(inputs, dtype=np.float32)
        self.check_clips(inputs)
        step = self.info.batch_size or len(inputs)
        chunks = []
        for start in range(0, len(inputs), max(step, 1)):
            chunk = inputs[start:start + step]
            num = len(chunk)
            if num < step:
                pad = np.zeros((step - num, *chunk.shape[1:]), np.float32)
                chunk = np.concatenate([chunk, pad])
            outs = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: chunk})
            chunks.append([o[:num] for o in outs])
        if not chunks:
            raise ValueError('no clips to run: the batch is empty.')
        return {
            name: np.concatenate([c[i] for c in chunks])
            for i, name in enumerate(OUTPUT_NAMES)
        }

    def actors(self, outputs: Dict[str, np.ndarray]) -> List[Actors]:
        """The actors of each clip from :meth:`run`'s outputs: boxes
        normalised to [0, 1] and clamped, in query order."""
        h, w = self.info.clip_shape[-2:]
        scale = np.array([w, h, w, h], np.float32)
        results = []
        for boxes, person, action, mask in zip(outputs['boxes'],
                                               outputs['person_scores'],
                                               outputs['action_scores'],
                                               outputs['actor_mask']):
            keep = np.flatnonzero(mask)
            results.append(
                Actors(
                    bboxes=np.clip(boxes[keep] / scale, 0, 1),
                    scores=action[keep],
                    actor_scores=person[keep],
                    query_index=keep))
        return results

    def detect(self, clips: np.ndarray) -> List[Actors]:
        """Normalise, run and keep the actors of (B, 3, T, H, W) clips."""
        return self.actors(self.run(self.normalize(clips)))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description='Run an exported EVAD ONNX file on one clip with '
        'numpy and onnxruntime only; prints the actors.')
    parser.add_argument('model', help='the .onnx file')
    parser.add_argument(
        '--clip',
        help='(3, T, H, W) or (B, 3, T, H, W) uint8 .npy clip(s); default: '
        'random pixels of the exported shape')
    parser.add_argument('--threads', type=int, default=None,
                        help='onnxruntime intra-op threads')
    args = parser.parse_args(argv)
    runner = EVADOnnxRunner(args.model, intra_op_threads=args.threads)
    if args.clip:
        clips = np.load(args.clip)
        clips = clips[None] if clips.ndim == 4 else clips
    else:
        rng = np.random.default_rng(0)
        clips = rng.integers(0, 256, (1, *runner.info.clip_shape), np.uint8)
    try:
        results = runner.detect(clips)
    except ValueError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    names = runner.info.classes or []
    for i, actors in enumerate(results):
        print(f'clip {i}: {len(actors)} actors')
        for box, person, scores in zip(actors.bboxes, actors.actor_scores,
                                       actors.scores):
            best = int(scores.argmax())
            label = names[best - 1] if 0 < best <= len(names) else \
                f'class_{best}'
            print(f'  box {np.round(box, 3).tolist()} person {person:.3f} '
                  f'top {label} {scores[best]:.3f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
