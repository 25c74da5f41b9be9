"""Tests for ``EVADInferencer``: built once, run on arrays, files and stream
windows through ``model.test_step`` (toy config, random weights, CPU)."""
import json
import os.path as osp
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config

from evad_mm.apis import (EVADInferencer, KeyframeResult, RandomWeightsWarning,
                          default_actor_thr, detect_video, init_detector)

from tests.conftest import REPO, moving_square_clip

TOY = osp.join(REPO, 'configs', 'evad_toy_ava.py')
T, H, W = 24, 64, 96


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    with pytest.warns(RandomWeightsWarning):
        return init_detector(TOY)


@pytest.fixture(scope='module')
def clip():
    return moving_square_clip(T, (H, W), slice(16, 48), 4, 24, 2)


@pytest.fixture(scope='module')
def inferencer(model):
    return EVADInferencer(model, score_thr=0.2, actor_thr=0.)


def assert_same(a: KeyframeResult, b: KeyframeResult, atol=1e-4):
    """Equal results; ``atol`` in pixels (float rounding)."""
    assert a.frame_index == b.frame_index and a.image_shape == b.image_shape
    np.testing.assert_allclose(a.bboxes, b.bboxes, rtol=1e-5, atol=atol)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-5)
    assert a.labels == b.labels


def test_built_from_config_once(monkeypatch, clip):
    with pytest.warns(RandomWeightsWarning):
        inferencer = EVADInferencer(
            TOY, cfg_options={'model.backbone.keep_rate': 0.5},
            short_side=64)
    assert inferencer.keep_rate == (0.5, 0.5, 0.5)
    assert inferencer.actor_thr == 0.3 == default_actor_thr(inferencer.cfg)
    assert (inferencer.clip_len, inferencer.frame_interval,
            inferencer.window_len, inferencer.window_keyframe) == (8, 2, 16,
                                                                   8)
    pipeline = inferencer.pipeline
    # nothing is rebuilt per call: any rebuild would fail now
    import evad_mm.apis.inferencer as module

    def rebuilt(*args, **kwargs):
        raise AssertionError('rebuilt per call')

    for name in ('init_detector', 'get_label_names', 'inference_pipeline',
                 'Compose'):
        monkeypatch.setattr(module, name, rebuilt)
    shapes = []
    test_step = inferencer.model.test_step

    def spy(data):
        shapes.append(tuple(torch.stack(data['inputs']).shape))
        return test_step(data)

    monkeypatch.setattr(inferencer.model, 'test_step', spy)
    for _ in range(2):
        inferencer.predict_window(clip[:16])
    out = inferencer(clip, keyframes=[3, 20], batch_size=2)
    assert inferencer.pipeline is pipeline
    assert shapes == [(1, 3, 8, 64, 96)] * 2 + [(2, 3, 8, 64, 96)]
    assert [r.frame_index for r in out['predictions']] == [3, 20]
    assert out['visualization'] is None


def test_window_is_the_clip_of_its_keyframe(inferencer, clip):
    """A stream window gives what ``detect_video`` gives for the window's
    keyframe in the whole video."""
    start = 6
    window = list(clip[start:start + inferencer.window_len])
    result = inferencer.predict_window(window)
    assert result.frame_index == inferencer.window_keyframe
    whole = detect_video(inferencer.model, clip,
                         keyframes=[start + inferencer.window_keyframe],
                         score_thr=0.2)[0]
    result.frame_index = whole.frame_index
    assert_same(result, whole)
    with pytest.raises(ValueError, match='window of 15 frames.*takes 16'):
        inferencer.predict_window(window[1:])


def test_arrays_files_and_lists_agree(inferencer, clip, tmp_path):
    from tests.conftest import write_mp4
    keyframes = [0, 12, 23]
    a = inferencer(clip, keyframes=keyframes)['predictions']
    b = inferencer(list(clip), keyframes=keyframes)['predictions']
    for x, y in zip(a, b):
        assert_same(x, y)
    path = write_mp4(tmp_path / 'clip.mp4', clip, 10)
    c = inferencer(path, keyframes=keyframes)['predictions']
    assert [r.frame_index for r in c] == keyframes
    assert [r.time for r in c] == pytest.approx([0, 1.2, 2.3])  # 10 fps
    # default keyframes: one in the middle of every 8 frames
    assert [r.frame_index for r in inferencer(clip)['predictions']] == \
        [4, 12, 20]


def test_visualization_dump_and_datasamples(inferencer, clip, tmp_path):
    out_file = tmp_path / 'preds.json'
    out = inferencer(clip, keyframes=[12], return_vis=True,
                     vis_out_dir=str(tmp_path / 'vis'),
                     pred_out_file=str(out_file))
    (drawn, ) = out['visualization']
    assert drawn.shape == (H, W, 3) and not np.array_equal(drawn, clip[12])
    assert osp.isfile(tmp_path / 'vis' / '000012.jpg')
    dumped = json.loads(out_file.read_text())
    assert dumped == [json.loads(json.dumps(out['predictions'][0].to_dict()))]
    samples = inferencer(clip, keyframes=[12],
                         return_datasamples=True)['predictions']
    assert samples[0].metainfo['frame_index'] == 12
    assert samples[0].pred_instances.bboxes.shape[1] == 4
    with pytest.raises(ValueError, match='unknown argument'):
        inferencer(clip, score_thr=0.5)


def test_keep_rate_control(model):
    inferencer = EVADInferencer(model)
    inferencer.set_keep_rate([0.4, 0.6, 0.8])
    assert inferencer.keep_rate == (0.4, 0.6, 0.8)
    inferencer.set_keep_rate([0.7])
    assert inferencer.keep_rate == (0.7, 0.7, 0.7)
    with pytest.raises(ValueError, match=r'\(0, 1\]'):
        inferencer.set_keep_rate(1.5)
    with pytest.raises(ValueError, match='weights and cfg_options'):
        EVADInferencer(model, 'some.pth')


class TestStepOnly:
    """The least a model needs for ``EVADInferencer``: ``cfg`` and
    ``test_step`` (here the PyTorch model's), no ``nn.Module``, no
    controls."""

    def __init__(self, model):
        self.cfg = Config(model.cfg.to_dict())
        self._model = model

    def test_step(self, data):
        return self._model.test_step(data)


def test_any_model_with_test_step(model, clip):
    other = EVADInferencer(TestStepOnly(model), score_thr=0.2)
    assert other.keep_rate is None and other.actor_thr == 0.3
    assert_same(other.predict_window(clip[:16]),
                EVADInferencer(model, score_thr=0.2).predict_window(
                    clip[:16]))
    with pytest.raises(ValueError, match='TestStepOnly has no set_keep_rate'):
        other.set_keep_rate(0.5)
    with pytest.raises(TypeError, match='not int'):
        EVADInferencer(3)


def test_exported_model(model, clip, tmp_path):
    """An exported .onnx file runs through the inferencer like the model it
    was exported from."""
    pytest.importorskip('onnxruntime')
    from evad_mm.deployment import export_onnx
    path = str(tmp_path / 'toy.onnx')
    export_onnx(model, path, (8, H, W))
    exported = EVADInferencer(path, score_thr=0.2)
    assert type(exported.model).__name__ == 'ONNXDetector'
    assert exported.keep_rate == (0.7, 0.7, 0.7)
    # frames at the exported size, as the PyTorch model sees them;
    # onnxruntime's float rounding moves boxes by ~1e-3 px
    assert_same(exported.predict_window(clip[:16]),
                EVADInferencer(model, score_thr=0.2,
                               short_side=H).predict_window(clip[:16]),
                atol=0.01)
    # frames of another size are resized to it, if of its aspect ratio
    half = exported.predict_window(clip[:16, ::2, ::2])
    assert half.image_shape == (H // 2, W // 2) and len(half) > 0
    assert (half.bboxes <= [W // 2, H // 2] * 2).all()
    with pytest.raises(ValueError, match='--shape 8 64 80'):
        exported.predict_window(clip[:16, :48, :60])
    with pytest.raises(ValueError, match='fixed at export'):
        EVADInferencer(path, short_side=128)
    with pytest.raises(ValueError, match='fixed in the graph'):
        exported.set_keep_rate(0.5)
    with pytest.raises(ValueError, match='holds its weights'):
        EVADInferencer(path, 'best.pth')


def test_init_detector_onnx(tmp_path, monkeypatch):
    path = tmp_path / 'evad.onnx'
    with pytest.raises(FileNotFoundError, match='evad.onnx'):
        init_detector(str(path))
    path.write_bytes(b'not checked before the runtime')
    with pytest.raises(ValueError, match='drop the checkpoint'):
        init_detector(str(path), 'best.pth')
    with pytest.raises(ValueError, match='fixed at export'):
        init_detector(str(path), cfg_options={'model.backbone.keep_rate': 1})
    monkeypatch.setitem(sys.modules, 'evad_mm.deployment', None)
    with pytest.raises(ImportError, match='onnxruntime'):
        init_detector(str(path))
