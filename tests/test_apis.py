"""Tests for ``evad_mm.apis``: ``init_detector`` and ``detect_video`` on a
small generated clip (random toy weights, CPU)."""
import os.path as osp
import warnings

import numpy as np
import pytest
import torch

from evad_mm.apis import (KeyframeResult, RandomWeightsWarning, VideoReadError,
                          clip_indices, default_keyframes, detect_video,
                          get_label_names, init_detector, load_label_map,
                          load_video, nearest_keyframe)
from evad_mm.apis.inference import _disable_pretrained

from tests.conftest import write_mp4

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOY = osp.join(REPO, 'configs', 'evad_toy_ava.py')
CLASSES = ('move_left', 'move_right', 'grow', 'shrink', 'stand_still',
           'striped', 'wave')
T, H, W, FPS = 40, 96, 128, 10


def make_clip(num_frames=T, height=H, width=W, seed=0):
    """(T, H, W, 3) uint8 RGB: a textured square moving right over noise."""
    rng = np.random.default_rng(seed)
    clip = rng.integers(0, 80, (num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        x = 5 + 2 * t
        clip[t, 30:70, x:x + 30] = (200, 60 + 3 * t, 40)
        clip[t, 30:70:4, x:x + 30] = 255
    return clip


@pytest.fixture(scope='module')
def clip():
    return make_clip()


@pytest.fixture(scope='module')
def clip_mp4(clip, tmp_path_factory):
    return write_mp4(tmp_path_factory.mktemp('video') / 'clip.mp4', clip,
                     FPS)


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    with pytest.warns(RandomWeightsWarning, match='random weights'):
        return init_detector(TOY)


def check_result(r, keyframe, height=H, width=W, fps=FPS, thr=0.0):
    assert isinstance(r, KeyframeResult)
    n = len(r.bboxes)
    assert n >= 1  # EVAD keeps all its boxes when none is confident
    assert r.frame_index == keyframe
    assert r.time == pytest.approx(keyframe / fps)
    assert r.image_shape == (height, width)
    assert r.bboxes.shape == r.bboxes_normalized.shape == (n, 4)
    assert r.scores.shape == (n, len(CLASSES))
    assert r.actor_scores.shape == (n, )
    assert len(r.labels) == len(r.label_scores) == len(r.label_ids) == n
    b = r.bboxes
    assert (b >= 0).all() and (b[:, 2] <= width).all() and \
        (b[:, 3] <= height).all()
    assert (b[:, 2] >= b[:, 0]).all() and (b[:, 3] >= b[:, 1]).all()
    np.testing.assert_allclose(
        b, r.bboxes_normalized * [width, height, width, height], rtol=1e-5)
    assert ((r.scores >= 0) & (r.scores <= 1)).all()
    for names, ids, scores, row in zip(r.labels, r.label_ids, r.label_scores,
                                       r.scores):
        assert all(s >= thr for s in scores)
        assert scores == sorted(scores, reverse=True)
        assert names == [CLASSES[i - 1] for i in ids]
        np.testing.assert_allclose(scores, row[np.array(ids, int) - 1])
        # every class above the threshold is listed
        assert len(ids) == int((row >= thr).sum())


def test_init_detector(model):
    assert not model.training
    assert model.cfg.filename == TOY
    assert model.action_head.num_classes == len(CLASSES) + 1
    assert next(model.parameters()).device.type == 'cpu'


def test_init_detector_checkpoint(model, tmp_path):
    path = tmp_path / 'toy.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {'epoch': 1}},
               path)
    with warnings.catch_warnings():
        warnings.simplefilter('error', RandomWeightsWarning)
        loaded = init_detector(TOY, str(path))
    for (name, a), b in zip(model.state_dict().items(),
                            loaded.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        init_detector(TOY, str(tmp_path / 'missing.pth'))
    # a checkpoint of another model is refused, unless strict=False
    from evad_mm.utils.checkpoint import CheckpointMismatchError
    foreign = tmp_path / 'foreign.pth'
    torch.save({'state_dict': {'fc.weight': torch.zeros(2, 2)}}, foreign)
    with pytest.raises(CheckpointMismatchError, match='foreign.pth'):
        init_detector(TOY, str(foreign))
    assert not init_detector(TOY, str(foreign), strict=False).training


def test_pretrained_disabled_without_building():
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'evad_vitb_ava.py'))
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'
    disabled = _disable_pretrained(cfg.model)
    assert disabled == ['model.backbone.init_cfg']
    assert cfg.model.backbone.init_cfg is None
    node = dict(init_cfg=[dict(type='Pretrained', checkpoint='x'),
                          dict(type='Normal', layer='Linear')],
                sub=[dict(pretrained='y.pth')])
    _disable_pretrained(node)
    assert node == dict(init_cfg=[dict(type='Normal', layer='Linear')],
                        sub=[dict(pretrained=None)])


def test_detect_video_array(model, clip):
    results = detect_video(model, clip, score_thr=0.3)
    keyframes = [4, 12, 20, 28, 36]
    assert [r.frame_index for r in results] == keyframes
    for r, k in zip(results, keyframes):
        check_result(r, k, thr=0.3)  # frames in memory: the config's 10 fps
    d = results[0].to_dict()
    assert d['frame_index'] == 4 and len(d['bboxes']) == len(results[0])


def test_detect_video_mp4(model, clip_mp4, monkeypatch):
    shapes = []
    test_step = model.test_step

    def spy(data):
        shapes.append(tuple(torch.stack(data['inputs']).shape))
        return test_step(data)

    monkeypatch.setattr(model, 'test_step', spy)
    # keyframes at both ends: clip frames clamped to the video
    results = detect_video(model, clip_mp4, keyframes=[0, 39], fps=5.)
    assert [r.frame_index for r in results] == [0, 39]
    for r in results:
        check_result(r, r.frame_index, fps=5.)
    # one forward of 2 clips, 8 frames, short side 128 (the config's Resize)
    assert shapes == [(2, 3, 8, 128, 171)]
    shapes.clear()
    results = detect_video(
        model, clip_mp4, keyframes=[20], short_side=64, label_map=CLASSES)
    check_result(results[0], 20)  # time from the file's 10 fps
    assert shapes == [(1, 3, 8, 64, 85)]


def test_list_of_frames_matches_array(model, clip):
    a = detect_video(model, clip, keyframes=[12], fps=FPS)[0]
    b = detect_video(model, list(clip), keyframes=[12], fps=FPS)[0]
    np.testing.assert_array_equal(a.bboxes, b.bboxes)
    np.testing.assert_array_equal(a.scores, b.scores)


def test_clip_indices_match_sample_ava_frames():
    from mmaction.datasets.transforms import SampleAVAFrames
    for clip_len, interval in ((8, 2), (16, 4), (5, 3)):
        sampler = SampleAVAFrames(clip_len, interval, test_mode=True)
        for key in (0, 3, 20, 39):
            ref = sampler(dict(fps=1, timestamp=key, timestamp_start=0,
                               total_frames=T))['frame_inds']
            np.testing.assert_array_equal(
                clip_indices(key, clip_len, interval, T), ref)


def test_default_keyframes():
    assert default_keyframes(40, 8) == [4, 12, 20, 28, 36]
    assert default_keyframes(40, 8, start=5, end=25) == [9, 17]
    assert default_keyframes(3, 8) == [1]
    assert default_keyframes(40, 8, start=30, end=20) == []


def test_nearest_keyframe():
    assert nearest_keyframe(np.arange(16), [4, 12]).tolist() == \
        [0] * 8 + [1] * 8
    assert nearest_keyframe(np.arange(3), [7]).tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match='at least one keyframe'):
        nearest_keyframe(np.arange(3), [])


def test_label_maps(tmp_path, model):
    txt = tmp_path / 'label_map.txt'
    txt.write_text(''.join(f'{i}: {n}\n' for i, n in enumerate(CLASSES, 1)))
    pbtxt = tmp_path / 'actions.pbtxt'
    pbtxt.write_text(''.join(
        f'item {{\n  name: "{n}"\n  id: {i}\n}}\n'
        for i, n in enumerate(CLASSES, 1)))
    names = tmp_path / 'names.txt'
    names.write_text('\n'.join(CLASSES) + '\n')
    expected = dict(enumerate(CLASSES, 1))
    for path in (txt, pbtxt, names):
        assert load_label_map(path) == expected
        assert get_label_names(model, str(path)) == expected
    assert get_label_names(model) == expected  # the config's `classes`

    # a map of another class count is refused
    short = tmp_path / 'short.txt'
    short.write_text('1: a\n2: b\n3: c\n')
    with pytest.raises(ValueError, match='3 classes.*model predicts 7'):
        get_label_names(model, str(short))
    long = tmp_path / 'long.txt'
    long.write_text(''.join(f'{i}: c{i}\n' for i in range(1, 10)))
    with pytest.raises(ValueError, match='9 classes.*model predicts 7'):
        detect_video(model, make_clip(4), label_map=str(long))
    mixed = tmp_path / 'mixed.txt'
    mixed.write_text('1: a\nb\n')
    with pytest.raises(ValueError, match='id: name'):
        load_label_map(mixed)

    # ids with gaps (AVA's 60 of 80): a subset, only those are reported
    subset = tmp_path / 'subset.pbtxt'
    subset.write_text('item {\n  name: "grow"\n  id: 3\n}\n'
                      'item {\n  name: "wave"\n  id: 7\n}\n')
    r = detect_video(model, make_clip(8), keyframes=[4],
                     label_map=str(subset))[0]
    assert r.scores.shape[1] == len(CLASSES)
    assert all(set(ids) == {3, 7} for ids in r.label_ids)
    assert all(set(n) == {'grow', 'wave'} for n in r.labels)


def test_class_names_fallback():

    class Head:
        num_classes = 4

    class Stub:
        action_head = Head()

    from mmengine.config import Config
    stub = Stub()
    stub.cfg = Config(dict(model=dict()))
    assert get_label_names(stub) == {1: 'class_1', 2: 'class_2',
                                     3: 'class_3'}


def test_video_errors(tmp_path, model):
    missing = str(tmp_path / 'no_such_video.mp4')
    with pytest.raises(FileNotFoundError, match='no_such_video.mp4'):
        detect_video(model, missing)
    garbage = tmp_path / 'garbage.mp4'
    garbage.write_bytes(b'this is not a video' * 50)
    with pytest.raises(VideoReadError, match='garbage.mp4'):
        load_video(str(garbage))
    empty = tmp_path / 'empty.mp4'
    empty.write_bytes(b'')
    with pytest.raises(VideoReadError, match='empty.mp4'):
        load_video(str(empty))
    with pytest.raises(ValueError, match='no frames'):
        load_video([])
    with pytest.raises(ValueError, match=r'\(T, H, W, 3\)'):
        load_video(np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(ValueError, match='outside the video'):
        detect_video(model, make_clip(4), keyframes=[4])
