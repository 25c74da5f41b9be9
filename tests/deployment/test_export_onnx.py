"""Parity of the exported graph with PyTorch (onnxruntime, CPU provider)."""
import numpy as np
import onnx
import pytest
import torch
from mmaction.structures import ActionDataSample
from mmengine.dataset import pseudo_collate

from evad_mm.deployment import (EVADOnnxGraph, ONNXDetector,
                                compare_with_pytorch)
from evad_mm.deployment.ort_runner import EVADOnnxRunner
from tests.deployment.conftest import CLIP, VARIANTS, clips

BOX_TOL = 1e-3  # pixels
SCORE_TOL = 1e-4


@pytest.mark.parametrize('name', VARIANTS)
def test_onnxruntime_matches_pytorch(exported, name):
    model, path = exported(name, **VARIANTS[name])
    runner = EVADOnnxRunner(path)
    for seed in range(3):
        diffs = compare_with_pytorch(model, path, clips(1, seed=seed), runner)
        assert diffs['boxes'] <= BOX_TOL, diffs
        assert diffs['person_scores'] <= SCORE_TOL, diffs
        assert diffs['action_scores'] <= SCORE_TOL, diffs
        assert diffs['actor_mask'] == 0, diffs
        assert diffs['kept_tokens'] == 0, diffs


def test_kept_tokens_follow_the_keep_rate(exported):
    """At rho 0.7 the graph keeps ceil(0.7 N) tokens after each of three
    pruning layers, all 16 keyframe tokens among them, and the very tokens
    PyTorch keeps."""
    model, path = exported('rho0.7', **VARIANTS['rho0.7'])
    inputs = clips(1, seed=5)
    kept = EVADOnnxRunner(path).run(inputs.numpy())['kept_tokens']
    num = 4 * 4 * 4  # (t, h, w) of an 8 x 64 x 64 clip
    for _ in range(3):
        num = int(np.ceil(0.7 * num))
    assert kept.shape == (1, num)
    assert set(range(2 * 16, 3 * 16)) <= set(kept[0].tolist())  # keyframe
    with torch.no_grad():
        want = model.backbone(inputs).token_index.numpy()
    np.testing.assert_array_equal(kept, want)
    _, full = exported('rho1.0', **VARIANTS['rho1.0'])
    assert EVADOnnxRunner(full).run(inputs.numpy())['kept_tokens'].shape == \
        (1, 4 * 4 * 4)


@pytest.mark.parametrize('name', ['rho0.7', 'stem-rho0.7-nms'])
def test_onnx_detector_predicts_what_evad_predicts(exported, name):
    """``ONNXDetector.test_step`` on uint8 clips as the pipeline packs them
    equals ``EVAD.test_step``: the same actors, boxes and action scores (the
    action head sees only the actors in both)."""
    model, path = exported(name, **VARIANTS[name])
    detector = ONNXDetector(path)
    g = torch.Generator().manual_seed(7)

    def data():
        inputs = [
            torch.randint(0, 256, (3, *CLIP), generator=g, dtype=torch.uint8)
            for _ in range(2)
        ]
        samples = [
            ActionDataSample(metainfo=dict(img_shape=CLIP[1:]))
            for _ in range(2)
        ]
        return pseudo_collate([
            dict(inputs=i, data_samples=s) for i, s in zip(inputs, samples)
        ])

    for _ in range(2):
        batch = data()
        with torch.no_grad():
            want = model.test_step(batch)
        got = detector.test_step(batch)
        for w, o in zip(want, got):
            w, o = w.pred_instances, o.pred_instances
            assert len(o) == len(w) and 0 < len(o)
            torch.testing.assert_close(
                o.bboxes * CLIP[2], w.bboxes * CLIP[2], atol=BOX_TOL, rtol=0)
            torch.testing.assert_close(
                o.scores, w.scores, atol=SCORE_TOL, rtol=0)
            torch.testing.assert_close(
                o.actor_scores, w.actor_scores, atol=SCORE_TOL, rtol=0)
    # the threshold selects: some queries are not actors
    assert len(got[0].pred_instances) < model.rpn_head.num_proposals


def test_graph_module_is_predict(exported):
    """In PyTorch, the exported function's actors are ``EVAD.predict``'s."""
    model, _ = exported('stem-rho0.7-nms', **VARIANTS['stem-rho0.7-nms'])
    inputs = clips(2, seed=3)
    samples = [ActionDataSample(metainfo=dict(img_shape=CLIP[1:]))
               for _ in range(2)]
    with torch.no_grad():
        boxes, person, actions, mask, _ = EVADOnnxGraph(model)(inputs)
        preds = model.predict(inputs, samples)
    scale = boxes.new_tensor([CLIP[2], CLIP[1]] * 2)
    for i, pred in enumerate(preds):
        pred = pred.pred_instances
        torch.testing.assert_close(pred.bboxes,
                                   (boxes[i][mask[i]] / scale).clamp(0, 1))
        torch.testing.assert_close(pred.actor_scores, person[i][mask[i]])
        torch.testing.assert_close(pred.scores, actions[i][mask[i]])


def test_other_clip_size_is_a_clear_error(exported):
    _, path = exported('rho0.7', **VARIANTS['rho0.7'])
    runner = EVADOnnxRunner(path)
    with pytest.raises(ValueError, match='--shape 8 64 96'):
        runner.run(np.zeros((1, 3, 8, 64, 96), np.float32))
    detector = ONNXDetector(path)
    batch = pseudo_collate([
        dict(
            inputs=torch.zeros(3, 8, 64, 96, dtype=torch.uint8),
            data_samples=ActionDataSample(metainfo=dict(img_shape=(64, 96))))
    ])
    with pytest.raises(ValueError, match='exported for clips of'):
        detector.test_step(batch)
    padded = pseudo_collate([
        dict(
            inputs=torch.zeros(3, *CLIP, dtype=torch.uint8),
            data_samples=ActionDataSample(metainfo=dict(img_shape=(60, 64))))
    ])
    with pytest.raises(ValueError, match='no padding'):
        detector.test_step(padded)


def test_dynamic_batch(exported):
    """``dynamic_batch``: one clip's graph scanned over any batch size."""
    model, path = exported(
        'dynamic', export_kwargs=dict(dynamic_batch=True),
        **VARIANTS['rho0.7'])
    runner = EVADOnnxRunner(path)
    assert runner.info.batch_size is None
    for batch in (1, 3):
        diffs = compare_with_pytorch(model, path, clips(batch, seed=batch),
                                     runner)
        assert diffs['boxes'] <= BOX_TOL and diffs['actor_mask'] == 0
        assert diffs['action_scores'] <= SCORE_TOL


def test_fixed_batch_runs_any_number_of_clips(exported):
    """A batch-2 graph takes 3 clips in two runs (the last one padded)."""
    model, path = exported(
        'batch2', export_kwargs=dict(batch_size=2), **VARIANTS['rho0.7'])
    runner = EVADOnnxRunner(path)
    assert runner.info.batch_size == 2
    diffs = compare_with_pytorch(model, path, clips(3, seed=4), runner)
    assert diffs['boxes'] <= BOX_TOL and diffs['actor_mask'] == 0


@pytest.mark.parametrize('name', ['stem-rho0.7-nms', 'dynamic'])
def test_graph_has_standard_onnx_ops_only(exported, name):
    kwargs = dict(VARIANTS['rho0.7'], export_kwargs=dict(dynamic_batch=True)) \
        if name == 'dynamic' else VARIANTS[name]
    _, path = exported(name, **kwargs)
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain for o in model.opset_import} <= {'', 'ai.onnx'}

    def nodes(graph):
        for node in graph.node:
            yield node
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    yield from nodes(attr.g)

    ops = [n for n in nodes(model.graph)]
    assert all(n.domain in ('', 'ai.onnx') for n in ops)
    types = {n.op_type for n in ops}
    assert {'RoiAlign', 'TopK'} <= types
    if name == 'dynamic':
        assert 'Scan' in types


def test_metadata_rebuilds_the_config(exported):
    model, path = exported('stem-rho0.7-nms', **VARIANTS['stem-rho0.7-nms'])
    detector = ONNXDetector(path)
    info = detector.info
    assert info.input_shape == [1, 3, *CLIP]
    assert info.keep_rate == [0.7, 0.7, 0.7]
    assert info.num_proposals == 20 and info.num_classes == 8
    rule = model.roi_head.test_cfg
    assert info.test_cfg == rule
    assert info.score_thr == rule['score_thr'] and 0 < rule['score_thr'] < 1
    assert info.mean == [114.75] * 3 and info.std == [57.375] * 3
    assert detector.keep_rate == (0.7, 0.7, 0.7)
    # the config comes back with what the graph was traced with
    assert detector.cfg.model.backbone.keep_rate == 0.7
    assert detector.cfg.model.roi_head.test_cfg == info.test_cfg
    assert detector.cfg.classes == model.cfg.classes
    assert info.classes == [f'c{i}' for i in range(7)]
    assert detector.dataset_meta == dict(classes=tuple(info.classes))
    assert detector.eval() is detector
    with pytest.raises(ValueError, match='fixed in the graph'):
        detector.set_keep_rate(0.5)
