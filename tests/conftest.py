"""Shared helpers: tiny EVAD configs, mmaction2 data samples, mp4 clips,
and the scripts of tools/ loaded as modules."""
import copy
import importlib.util
import os.path as osp

import pytest
import torch

import evad_mm  # noqa: F401  (shims + registration before mmaction)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED = osp.join(osp.dirname(REPO), 'shared')


def load_tool(*parts):
    """``tools/<parts>.py`` (not a package) loaded as a fresh module, e.g.
    ``load_tool('data', 'check_ava_dataset')``."""
    path = osp.join(REPO, 'tools', *parts[:-1], f'{parts[-1]}.py')
    spec = importlib.util.spec_from_file_location(
        '_tool_' + '_'.join(parts), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def moving_square_clip(num_frames, size, rows, x0, box_width, step, seed=0):
    """(T, H, W, 3) uint8 RGB: dark noise with a bright square over
    ``rows`` (a slice) whose left edge moves from ``x0`` by ``step`` pixels
    a frame."""
    import numpy as np
    rng = np.random.default_rng(seed)
    clip = np.empty((num_frames, *size, 3), np.uint8)
    for t in range(num_frames):
        clip[t] = rng.integers(0, 80, (*size, 3), np.uint8)
        x = x0 + step * t
        clip[t, rows, x:x + box_width] = (220, 200, 40)
    return clip


def write_mp4(path, clip, fps):
    """Write ``clip``, (T, H, W, 3) uint8 RGB, as an mp4v video; return the
    path as a string."""
    import cv2
    import numpy as np
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), fps,
                             (clip.shape[2], clip.shape[1]))
    assert writer.isOpened()
    for frame in clip:
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
    writer.release()
    assert osp.getsize(path) > 0
    return str(path)


def random_checkpoint(config, path, seed=0):
    """Save the model of ``config`` with random weights (torch seed
    ``seed``) as an mmengine checkpoint at ``path``; return the path as a
    string."""
    import warnings

    from evad_mm.apis import RandomWeightsWarning, init_detector
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RandomWeightsWarning)
        model = init_detector(str(config))
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return str(path)


def export_toy_onnx(path, clip_shape, seed=0):
    """configs/evad_toy_ava.py with random weights (``seed``) exported to
    ONNX at ``path`` for (T, H, W) = ``clip_shape`` clips; the test is
    skipped without onnxruntime. Returns the path as a string."""
    pytest.importorskip('onnxruntime')
    import warnings

    from evad_mm.apis import RandomWeightsWarning, init_detector
    from evad_mm.deployment import export_onnx
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RandomWeightsWarning)
        model = init_detector(osp.join(REPO, 'configs', 'evad_toy_ava.py'))
    export_onnx(model, str(path), clip_shape)
    return str(path)


# a tiny EVADViT: 8x64x64 clips, 4 slices of 4x4 tokens, pruning after
# blocks 1 and 2
TINY_EVADVIT = dict(
    type='EVADViT',
    img_size=64,
    embed_dims=32,
    depth=4,
    num_heads=4,
    num_frames=8,
    prune_layers=(1, 2),
    out_indices=(0, 1, 2, 3),
    keep_rate=0.7)

# the data part of a config on a generated toy set (tools/make_toy_ava.py):
# ``.format(base=<config to inherit>, data=<its out_dir>)``
TOY_DATA_CONFIG = '''
_base_ = [{base!r}]
data_root = {data!r}
ann_root = data_root + '/annotations'
paths = dict(label_file=ann_root + '/action_list.pbtxt',
             data_prefix=dict(img=data_root + '/rawframes'))
loader = dict(batch_size=2, num_workers=0, persistent_workers=False)
train_dataloader = dict(
    **loader,
    dataset=dict(ann_file=ann_root + '/train.csv',
                 exclude_file=ann_root + '/train_excluded_timestamps.csv',
                 **paths))
val_dataloader = dict(
    **loader,
    dataset=dict(ann_file=ann_root + '/val.csv',
                 exclude_file=ann_root + '/val_excluded_timestamps.csv',
                 **paths))
test_dataloader = val_dataloader
val_evaluator = dict(
    ann_file=ann_root + '/val.csv',
    exclude_file=ann_root + '/val_excluded_timestamps.csv',
    label_file=ann_root + '/action_list.pbtxt')
test_evaluator = val_evaluator
'''


# configs/evad_toy_ava.py's model, smaller, and a pipeline of 64 px short
# side clips for it (``pipeline``, not set anywhere by this block)
TINY_TOY_MODEL = '''
pipeline = [
    dict(type='SampleAVAFrames', clip_len=8, frame_interval=2,
         test_mode=True),
    dict(type='RawFrameDecode'),
    dict(type='Resize', scale=(-1, 64), keep_ratio=True),
    dict(type='FormatShape', input_format='NCTHW', collapse=True),
    dict(type='PackActionInputs')
]
model = dict(
    backbone=dict(img_size=64, embed_dims=64, depth=4, prune_layers=(1, 2),
                  out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=64),
    action_head=dict(in_channels=64, embed_dims=64, pos_grid=(4, 4, 4)))
'''


TOY_EVAD_LAYOUT = osp.join(REPO, 'tests', 'configs',
                           'evad_toy_ava_evad_layout.py')


def toy_model_cfg(evad_layout=False, **overrides):
    """The model of configs/evad_toy_ava.py, as a dict; with
    ``evad_layout`` without its toy-only stem and box features."""
    from mmengine.config import Config
    cfg = Config.fromfile(TOY_EVAD_LAYOUT if evad_layout else
                          osp.join(REPO, 'configs', 'evad_toy_ava.py'))
    model = copy.deepcopy(cfg.model.to_dict())
    for key, value in overrides.items():
        model[key].update(value)
    return model


def action_samples(num_boxes, size=(64, 96), num_classes=8, seed=0):
    """ActionDataSamples as AVADataset + PackActionInputs give them."""
    from mmaction.structures import ActionDataSample
    from mmengine.structures import InstanceData
    g = torch.Generator().manual_seed(seed)
    h, w = size
    samples = []
    for i, n in enumerate(num_boxes):
        xy = torch.rand(n, 2, generator=g) * torch.tensor([w * .5, h * .5])
        wh = torch.rand(n, 2, generator=g) * torch.tensor([w * .4, h * .4])
        wh = wh + 8
        labels = torch.zeros(n, num_classes)
        if n:
            labels[torch.arange(n),
                   torch.randint(1, num_classes, (n, ), generator=g)] = 1
        sample = ActionDataSample()
        sample.set_metainfo(
            dict(img_shape=size, img_key=f'v{i},0901', video_id=f'v{i}',
                 timestamp=901))
        sample.gt_instances = InstanceData(
            bboxes=torch.cat([xy, xy + wh], 1), labels=labels)
        samples.append(sample)
    return samples


@pytest.fixture
def shared_dir():
    if not osp.isdir(SHARED):
        pytest.skip('../shared is not present (only in the development '
                    'workspace)')
    return SHARED


@pytest.fixture(autouse=True)
def mmaction_default_scope():
    """Build in mmaction's scope, as configs with default_scope='mmaction'
    do, whatever scope an earlier test's Runner left behind."""
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmaction'):
        yield
