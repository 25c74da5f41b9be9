"""Tests of evad_mm.compat: the shims ``import evad_mm`` applies to the stack.

CPU only, no network. Each test fails if its shim is removed or regresses.
"""
import contextlib
import csv
import math
import os
import pickle
import subprocess
import sys
import uuid
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import evad_mm  # noqa: F401  (applies the shims)
from evad_mm import compat
from evad_mm.utils.checkpoint import UnsafeCheckpointError, safe_torch_load

DRN_MODULE = 'mmaction.models.localizers.drn'
SHARED = Path(__file__).resolve().parents[2] / 'shared'
EVAL_DETECTION = SHARED / 'data/mmaction2/tests/data/eval_detection'


# --------------------------------------------------------------------------
# 1. mmaction2 1.2.0 wheel without localizers/drn (open-mmlab/mmaction2#2714)
# --------------------------------------------------------------------------
def _drn_stand_in_active():
    return getattr(sys.modules.get(DRN_MODULE), '__evad_mm_stand_in__', False)


def test_mmaction_and_mmdet_models_import():
    import mmaction.models  # noqa: F401
    import mmdet.models  # noqa: F401
    from mmaction.models.localizers import TCANet  # noqa: F401
    from mmaction.registry import MODELS
    assert MODELS.get('BMN') is not None  # localizers registered
    # apply_all() and the DRN shim are idempotent
    module = sys.modules.get(DRN_MODULE)
    compat.apply_all()
    assert sys.modules.get(DRN_MODULE) is module


def test_drn_stand_in_raises_clear_error():
    import mmaction.models  # noqa: F401
    if not _drn_stand_in_active():
        pytest.skip('this mmaction2 ships localizers/drn: no stand-in')
    from mmaction.models.localizers import DRN
    from mmaction.models.localizers.drn.drn import DRN as DRN2
    assert DRN is DRN2
    with pytest.raises(RuntimeError, match='not shipped in the mmaction2 '
                       r'1\.2\.0 wheel.*install mmaction2 from source'):
        DRN(vocab_size=10)
    from mmaction.registry import MODELS
    assert MODELS.get('DRN') is None  # not registered anywhere


def _fresh_python(code, cwd):
    out = subprocess.run([sys.executable, '-c', code], cwd=cwd,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.split()


def test_fresh_interpreter_needs_evad_mm_first(tmp_path):
    """Without evad_mm a fresh interpreter shows the upstream bugs (where the
    stack has them); importing evad_mm first fixes both."""
    bare = _fresh_python(
        'import numpy as np\n'
        'try:\n'
        '    import mmaction.models\n'
        '    print("imported")\n'
        'except ModuleNotFoundError as err:\n'
        '    print(err.name)\n'
        'print(hasattr(np, "NAN"))\n', tmp_path)
    fixed = _fresh_python(
        'import evad_mm, numpy as np\n'
        'import mmaction.models, mmdet.models\n'
        'print(np.isnan(np.NAN))\n', tmp_path)
    if _drn_stand_in_active():
        assert bare[-2] == DRN_MODULE  # the upstream bug is real here
    if np.lib.NumpyVersion(np.__version__) >= '2.0.0':
        assert bare[-1] == 'False'
    assert fixed[-1] == 'True'


# --------------------------------------------------------------------------
# 2. numpy 2 removed names mmaction2 uses
# --------------------------------------------------------------------------
def test_numpy_aliases_restored():
    assert np.isnan(np.NAN) and isinstance(np.NAN, float)
    assert np.Inf == np.inf and np.isposinf(np.Inf)
    assert np.trapz([1.0, 1.0], [0.0, 2.0]) == 2.0
    np.testing.assert_array_equal(
        np.in1d([[1, 2], [3, 4]], [2, 3]), [False, True, True, False])
    np.testing.assert_array_equal(
        np.in1d([1, 2, 3], [2], invert=True), [True, False, True])
    assert compat.patch_numpy_aliases() == []  # idempotent


def test_mmaction_ap_of_class_without_ground_truth_is_nan():
    from mmaction.evaluation.functional.ava_evaluation import metrics
    assert math.isnan(metrics.compute_average_precision(None, None))


# --------------------------------------------------------------------------
# 3. mmengine checkpoints under torch >= 2.6 weights_only loading
# --------------------------------------------------------------------------
@contextlib.contextmanager
def _without_allow_list():
    saved = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        yield
    finally:
        torch.serialization.add_safe_globals(saved)


def _mmengine_registrations():
    from mmengine.evaluator import BaseMetric
    from mmengine.hooks import Hook
    from mmengine.model import BaseModel
    from mmengine.registry import DATASETS, HOOKS, METRICS, MODELS

    @MODELS.register_module(name='CompatToyModel', force=True)
    class ToyModel(BaseModel):

        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(2, 1)

        def forward(self, inputs, labels=None, mode='tensor'):
            out = self.linear(inputs)
            if mode == 'loss':
                return dict(loss=F.mse_loss(out, labels))
            if mode == 'predict':
                return [(o, t) for o, t in zip(out, labels)]
            return out

    @DATASETS.register_module(name='CompatToyDataset', force=True)
    class ToyDataset(torch.utils.data.Dataset):
        metainfo = dict(classes=('a', 'b'))

        def __init__(self, size=8):
            gen = torch.Generator().manual_seed(0)
            self.x = torch.rand(size, 2, generator=gen)
            self.y = self.x.sum(1, keepdim=True)

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return dict(inputs=self.x[i], labels=self.y[i])

    @METRICS.register_module(name='CompatToyMetric', force=True)
    class ToyMetric(BaseMetric):
        """Returns a numpy scalar, like mmaction2's metrics do."""

        def process(self, data_batch, data_samples):
            self.results += [float((o - t).abs()) for o, t in data_samples]

        def compute_metrics(self, results):
            return dict(acc=np.float64(1.0 / (1.0 + np.mean(results))))

    @HOOKS.register_module(name='CompatRecordHook', force=True)
    class RecordHook(Hook):
        """Records what the runner holds once resuming is done."""
        priority = 'LOWEST'

        def __init__(self):
            self.seen = {}

        def before_train(self, runner):
            self.seen.update(
                iter=runner.iter,
                weights={k: v.clone() for k, v in
                         runner.model.state_dict().items()},
                lr=runner.optim_wrapper.get_lr()['lr'][0],
                loss_history=len(
                    runner.message_hub.get_scalar('train/loss').data[0]),
                best=runner.message_hub.get_info('best_score'),
                schedulers=[s.state_dict() for s in runner.param_schedulers])

    return RecordHook


def _runner(work_dir, max_iters, **kwargs):
    from mmengine.runner import Runner
    loader = dict(dataset=dict(type='CompatToyDataset'), batch_size=2,
                  sampler=dict(type='DefaultSampler', shuffle=True),
                  collate_fn=dict(type='default_collate'), num_workers=0)
    return Runner(
        model=dict(type='CompatToyModel'),
        work_dir=str(work_dir),
        experiment_name=f'compat_{uuid.uuid4().hex}',
        train_dataloader=loader,
        val_dataloader=dict(loader, sampler=dict(type='DefaultSampler',
                                                  shuffle=False)),
        val_evaluator=dict(type='CompatToyMetric'),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=max_iters,
                       val_interval=2),
        val_cfg=dict(type='ValLoop'),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
                 end=2),
            dict(type='MultiStepLR', milestones=[3, 5], by_epoch=False),
        ],
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=2,
                            by_epoch=False, save_best='acc', rule='greater'),
            logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0),
        default_scope='mmengine',
        **kwargs)


def test_mmengine_checkpoint_resumes_with_weights_only_load(
        tmp_path, monkeypatch):
    assert not os.environ.get('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD')
    RecordHook = _mmengine_registrations()
    first = _runner(tmp_path / 'first', max_iters=4)
    first.train()
    ckpt = tmp_path / 'first' / 'iter_4.pth'
    assert ckpt.is_file() and first.iter == 4

    # The checkpoint holds what the allow-list is for ...
    with _without_allow_list():
        unsafe = set(torch.serialization.get_unsafe_globals_in_checkpoint(
            str(ckpt)))
        with pytest.raises(pickle.UnpicklingError):
            torch.load(ckpt)  # torch's default weights_only=True
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in unsafe
    assert {'numpy.ndarray', 'numpy.dtype'} <= unsafe
    # ... and nothing outside it.
    assert torch.serialization.get_unsafe_globals_in_checkpoint(
        str(ckpt)) == []
    loaded = safe_torch_load(ckpt)
    assert loaded['meta']['iter'] == 4
    assert isinstance(loaded['message_hub']['runtime_info']['best_score'],
                      np.floating)

    # mmengine calls torch.load with weights_only left at torch's default.
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, 'load', spy)
    record = RecordHook()
    second = _runner(tmp_path / 'second', max_iters=6, resume=True,
                     load_from=str(ckpt), custom_hooks=[record])
    second.train()
    assert calls and all(k.get('weights_only', True) for k in calls)

    seen = record.seen
    assert seen['iter'] == 4
    final = first.model.state_dict()
    assert seen['weights'].keys() == final.keys()
    for key, value in final.items():
        torch.testing.assert_close(seen['weights'][key], value)
    assert seen['lr'] == pytest.approx(first.optim_wrapper.get_lr()['lr'][0])
    assert seen['loss_history'] == 4  # message hub history was resumed
    assert seen['best'] == pytest.approx(
        loaded['message_hub']['runtime_info']['best_score'])
    assert seen['schedulers'] == loaded['param_schedulers']
    assert seen['schedulers'][1]['_global_step'] == 4
    assert second.iter == 6


class _GetAttr:

    def __init__(self, obj, name):
        self.obj, self.name = obj, name

    def __reduce__(self):
        return getattr, (self.obj, self.name)


def test_getattr_is_allowed_only_for_history_buffer_statistics(tmp_path):
    """HistoryBuffer pickles its statistics methods as getattr(cls, name);
    the allow-list resolves exactly those, never getattr in general."""
    from mmengine.logging import HistoryBuffer
    path = tmp_path / 'ok.pth'
    torch.save([_GetAttr(HistoryBuffer, 'mean')], path)
    assert torch.load(path) == [HistoryBuffer.mean]
    for obj, name in [(HistoryBuffer, '__init__'), (HistoryBuffer, 'update'),
                      (np.ndarray, 'tofile'), (torch.Tensor, 'storage')]:
        torch.save([_GetAttr(obj, name)], path)
        with pytest.raises(pickle.UnpicklingError, match='not allowed'):
            torch.load(path)
        with pytest.raises(UnsafeCheckpointError, match='not allowed'):
            safe_torch_load(path)


def test_allow_list_names_numpy_1_and_2_modules():
    names = {e[1] for e in compat.mmengine_checkpoint_safe_globals()
             if isinstance(e, tuple)}
    assert {'numpy.core.multiarray._reconstruct',
            'numpy._core.multiarray._reconstruct',
            'numpy.core.multiarray.scalar', 'numpy._core.multiarray.scalar',
            'builtins.getattr'} == names
    assert type(np.dtype('float64')) in \
        compat.mmengine_checkpoint_safe_globals()


def test_numpy_1_and_2_pickles_load(tmp_path):
    """numpy 1 pickles arrays and scalars as numpy.core.multiarray.*, numpy 2
    as numpy._core.multiarray.*: both load with weights_only=True."""
    path = tmp_path / 'np.pth'
    torch.save({'a': np.arange(3.0), 's': np.float32(0.5)}, path,
               _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    for core in (b'numpy._core.multiarray', b'numpy.core.multiarray'):
        other = b'numpy.core.multiarray' if b'_core' in core \
            else b'numpy._core.multiarray'
        path.write_bytes(data.replace(other, core))
        assert core in path.read_bytes()
        loaded = torch.load(path)
        np.testing.assert_array_equal(loaded['a'], [0.0, 1.0, 2.0])
        assert loaded['s'] == np.float32(0.5)


# --------------------------------------------------------------------------
# MultiSports video-mAP on numpy >= 2.4
# --------------------------------------------------------------------------
def _tube(first, last, box):
    """(n, 5) rows ``frame, x1, y1, x2, y2`` of a still box."""
    frames = np.arange(first, last + 1, dtype=np.float32)[:, None]
    return np.concatenate(
        [frames, np.tile(np.array(box, np.float32), (len(frames), 1))], 1)


def test_multisports_tube_iou_keeps_mmaction2_semantics():
    """mmaction2's iou3dt_voc works after ``import evad_mm``, as mmaction2
    defines it: the temporal IoU ((tmax - tmin) / (end - start)) times the
    mean spatial IoU over the shared frames."""
    from mmaction.evaluation.functional import multisports_utils
    assert compat.patch_multisports_tube_iou() is (
        multisports_utils.iou3dt_voc is compat._tube_iou)  # idempotent
    if np.lib.NumpyVersion(np.__version__) >= '2.4.0':
        assert multisports_utils.iou3dt_voc is compat._tube_iou
    b1, b2 = _tube(1, 3, (0, 0, 4, 4)), _tube(2, 4, (0, 0, 4, 4))
    tube_iou = compat._tube_iou
    assert tube_iou(b1, b2) == pytest.approx(1 / 3)
    assert tube_iou(b1, b2, spatialonly=True) == pytest.approx(1.0)
    assert tube_iou(b1, b2, temporalonly=True) == pytest.approx(1 / 3)
    assert tube_iou(b1, _tube(5, 6, (0, 0, 4, 4))) == 0.0
    b3 = _tube(2, 3, (2, 0, 6, 4))  # half-overlapping boxes
    assert tube_iou(b1, b3, spatialonly=True) == pytest.approx(
        multisports_utils.iou2d_voc(b1[1:, 1:5], b3[0, 1:5])[0])
    assert multisports_utils.iou3dt_voc(b1, b2) == pytest.approx(1 / 3)


# --------------------------------------------------------------------------
# AVAMetric on numpy 2
# --------------------------------------------------------------------------
def _samples_from_rows(rows, num_classes):
    """AVA csv rows (vid, ts, x1, y1, x2, y2, action, score) -> one
    ActionDataSample per frame, as an AVA detector's predict() returns."""
    from mmaction.structures import ActionDataSample
    from mmengine.structures import InstanceData
    frames = defaultdict(list)
    for vid, ts, *box, action, score in rows:
        frames[vid, int(ts)].append(([float(v) for v in box], int(action),
                                     float(score)))
    samples = []
    for (vid, ts), dets in frames.items():
        scores = torch.zeros(len(dets), num_classes)
        for i, (_, action, score) in enumerate(dets):
            scores[i, action] = score
        sample = ActionDataSample(metainfo=dict(
            video_id=vid, timestamp=ts, img_shape=(256, 340)))
        sample.pred_instances = InstanceData(
            bboxes=torch.tensor([d[0] for d in dets]), scores=scores)
        samples.append(sample)
    return samples


def _evaluate(samples, **metric_kwargs):
    from mmaction.evaluation import AVAMetric
    from mmengine.evaluator import Evaluator
    evaluator = Evaluator([AVAMetric(**metric_kwargs)])
    evaluator.process(samples)
    return evaluator.evaluate(len(samples))


def test_ava_metric_on_mmaction2_samples(tmp_path, monkeypatch):
    if not EVAL_DETECTION.is_dir():
        pytest.skip(f'{EVAL_DETECTION} is absent')
    from mmaction.evaluation.functional import ava_eval
    monkeypatch.chdir(tmp_path)  # AVAMetric writes a csv to the cwd
    files = dict(ann_file=str(EVAL_DETECTION / 'gt.csv'), exclude_file=None,
                 label_file=str(EVAL_DETECTION / 'action_list.txt'))
    with open(EVAL_DETECTION / 'pred.csv') as f:
        rows = list(csv.reader(f))
    result = _evaluate(_samples_from_rows(rows, 4), num_classes=4, **files)
    assert set(result) == {'mAP/overall', 'mAP/person_movement',
                           'mAP/object_manipulation', 'mAP/person_interaction'}
    overall = result['mAP/overall']
    assert math.isfinite(overall) and 0.0 <= overall <= 1.0
    reference = ava_eval(str(EVAL_DETECTION / 'pred.csv'), 'mAP',
                         files['label_file'], files['ann_file'], None)
    assert overall == pytest.approx(reference['overall'], abs=1e-6)
    assert overall == pytest.approx(0.09385522, abs=1e-6)  # mmaction2's test


def test_ava_metric_class_with_detections_but_no_ground_truth(
        tmp_path, monkeypatch):
    """Class 3 is labelled and detected but has no ground truth: its AP is
    np.NAN (the numpy 2 crash) and nanmean leaves it out."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'labels.pbtxt').write_text(''.join(
        f'item {{\n  name: "action{i}"\n  id: {i}\n}}\n' for i in (1, 2, 3)))
    gt = [('vidA', 902, 0.1, 0.1, 0.5, 0.9, 1),
          ('vidA', 902, 0.5, 0.2, 0.9, 0.8, 2),
          ('vidA', 902, 0.5, 0.2, 0.9, 0.8, 1),
          ('vidB', 903, 0.2, 0.1, 0.6, 0.7, 2)]
    (tmp_path / 'gt.csv').write_text(''.join(
        ','.join(map(str, row)) + f',{i}\n' for i, row in enumerate(gt)))
    perfect = [row + (0.9, ) for row in gt]
    perfect.append(('vidB', 903, 0.2, 0.1, 0.6, 0.7, 3, 0.8))  # no GT class
    kwargs = dict(ann_file=str(tmp_path / 'gt.csv'), exclude_file=None,
                  label_file=str(tmp_path / 'labels.pbtxt'), num_classes=4)
    result = _evaluate(_samples_from_rows(perfect, 4), **kwargs)
    assert result['mAP/overall'] == pytest.approx(1.0)
    assert result['mAP/person_movement'] == pytest.approx(1.0)  # ids <= 14
    # a miss halves class 2's AP: overall = (1 + 0.5) / 2
    missed = [r for r in perfect if r[:2] != ('vidB', 903) or r[6] != 2]
    result = _evaluate(_samples_from_rows(missed, 4), **kwargs)
    assert result['mAP/overall'] == pytest.approx(0.75)
