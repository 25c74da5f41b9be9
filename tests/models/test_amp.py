"""Mixed precision on the CPU with bfloat16 autocast: the ranking of the
pruning blocks in float32, RoIAlign in float32, a toy training step close
to float32 (also through mmengine's AmpOptimWrapper), the kept tokens, and
a bfloat16 training step of every shipped config's model, shrunk."""
import copy
import functools
import glob
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from evad_mm.models.layers import Attention
from evad_mm.registry import MMDET_MODELS, MODELS
from tests.conftest import REPO, toy_model_cfg
from tests.models.test_evad_detector import batch

BF16 = dict(device_type='cpu', dtype=torch.bfloat16)

# bfloat16 keeps 8 significant bits (~2-3 decimal digits). Every loss of a
# toy training step is within 3% of float32 (largest difference measured
# over 8 seeds: 1.0%, s2.loss_cls), given the same Hungarian matching and
# trained-size box deltas (see the test)
LOSS_RTOL = 3e-2
# share of the float32-kept tokens that bfloat16 autocast keeps too
MIN_KEPT_AGREEMENT = 0.95

# the toy model at test size, as in tests/test_toy_training.py
TINY_TOY = dict(
    backbone=dict(img_size=64, embed_dims=64, depth=4, prune_layers=(1, 2),
                  out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=64),
    action_head=dict(in_channels=64, embed_dims=64, pos_grid=(4, 4, 4)))


def build_toy(seed=0, **overrides):
    torch.manual_seed(seed)
    model = MODELS.build(toy_model_cfg(**{**TINY_TOY, **overrides}))
    model.init_weights()
    return model


def test_ranking_is_float32_under_autocast():
    torch.manual_seed(0)
    attn = Attention(32, 4)
    x = torch.randn(2, 40, 32, requires_grad=True)
    weights = torch.ones(40)
    weights[:8] = 2.
    for grad in (True, False):
        with torch.autocast(**BF16), torch.set_grad_enabled(grad):
            out, scores = attn(x, query_weights=weights)
            q, k, _ = attn._qkv(x)
        assert q.dtype == torch.bfloat16  # the activations are bfloat16
        assert scores.dtype == torch.float32
        assert out.dtype == torch.bfloat16
        # the scores are those of q and k (bfloat16 activations) upcast
        ref = ((q.float() * attn.scale) @ k.float().transpose(-2, -1))
        ref = torch.einsum('i,bhij->bj', weights, ref.softmax(-1)) / (40 * 4)
        torch.testing.assert_close(scores, ref.detach(), atol=1e-6,
                                   rtol=1e-5)


@pytest.mark.parametrize('registry, cfg, feats', [
    (MODELS, dict(type='ExtendedRoIExtractor3D', featmap_stride=8,
                  output_size=3),
     lambda: torch.randn(2, 4, 3, 20, 20)),
    (MMDET_MODELS, dict(type='Float32SingleRoIExtractor', out_channels=4,
                        featmap_strides=[4, 8],
                        roi_layer=dict(type='RoIAlign', output_size=3,
                                       sampling_ratio=2)),
     lambda: (torch.randn(2, 4, 40, 40), torch.randn(2, 4, 20, 20))),
])
def test_roi_extraction_runs_in_float32(registry, cfg, feats):
    """bfloat16 maps (no mmcv kernel): same features as float32 extraction
    of the same values, boxes not rounded to bfloat16, gradients flow."""
    extractor = registry.build(cfg)
    torch.manual_seed(0)
    maps = feats()
    maps = maps.bfloat16() if torch.is_tensor(maps) else tuple(
        m.bfloat16() for m in maps)
    # coordinates that bfloat16 cannot hold (steps of 0.25 to 0.5 here);
    # for the FPN extractor one box per level
    rois = torch.tensor([[0., 3.3, 5.1, 60.7, 80.9],
                         [1., 0.6, 0.7, 140.1, 150.3]])
    leaves = [maps] if torch.is_tensor(maps) else list(maps)
    for m in leaves:
        m.requires_grad_()
    with torch.autocast(**BF16):
        out = extractor(maps, rois)
    out = out[0] if isinstance(out, tuple) else out
    assert out.dtype == torch.bfloat16
    as_float = maps.float() if torch.is_tensor(maps) else tuple(
        m.float() for m in maps)
    ref = extractor(as_float, rois)
    ref = ref[0] if isinstance(ref, tuple) else ref
    assert torch.equal(out, ref.bfloat16())
    out.float().sum().backward()
    assert all(m.grad is not None and m.grad.abs().sum() > 0 for m in leaves)


def losses_of(model, data, autocast):
    with torch.autocast(**BF16, enabled=autocast):
        losses = model(**copy.deepcopy(data), mode='loss')
    return {k: v for k, v in losses.items() if 'loss' in k}


def test_toy_training_step_in_bfloat16_is_close_to_float32(monkeypatch):
    """Two things a random model does and a trained one does not are
    controlled here. Its Xavier-initialised box regression gives deltas of
    order 1, so boxes grow to ~1500 px over three stages and bfloat16's
    rounding compounds through exp() (stage-2 box losses then differ by up
    to 46%): the regression layers are scaled down 10x, to small deltas. Its
    Hungarian matching is full of near-ties that rounding can flip: the
    float32 run's matching is replayed, so each loss compares the same
    boxes."""
    from mmdet.models.task_modules.assigners import HungarianAssigner
    model = build_toy().train()
    for stage in model.roi_head.bbox_head:
        stage.fc_reg.weight.data *= 0.1
    data = model.data_preprocessor(batch([2, 1]), training=True)
    assign, matches = HungarianAssigner.assign, []

    def record(self, *args, **kwargs):
        matches.append(assign(self, *args, **kwargs))
        return matches[-1]

    monkeypatch.setattr(HungarianAssigner, 'assign', record)
    ref = losses_of(model, data, autocast=False)
    replay = iter(matches)
    monkeypatch.setattr(HungarianAssigner, 'assign',
                        lambda self, *args, **kwargs: next(replay))
    losses = losses_of(model, data, autocast=True)
    assert next(replay, None) is None  # as many matchings as in float32
    assert losses.keys() == ref.keys()
    for name, value in losses.items():
        assert torch.isfinite(value), name
        torch.testing.assert_close(value.float(), ref[name], rtol=LOSS_RTOL,
                                   atol=0, msg=name)
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert model.backbone.patch_embed.cnn.conv1.conv.weight.grad is not None


def test_bfloat16_keeps_the_tokens_float32_keeps():
    """The toy config's backbone (random weights) on a fixed clip."""
    torch.manual_seed(0)
    backbone = MODELS.build(toy_model_cfg()['backbone'])
    backbone.init_weights()
    backbone.eval()
    clip = torch.randn(2, 3, 8, 128, 160, generator=torch.Generator()
                       .manual_seed(1))
    with torch.no_grad():
        ref = backbone(clip).token_index
        with torch.autocast(**BF16):
            out = backbone(clip)
    assert out.tokens.dtype == torch.bfloat16
    assert out.token_index.shape == ref.shape
    num_key = out.grid[1] * out.grid[2]
    for b in range(len(clip)):
        kept, kept_ref = (set(i[b, num_key:].tolist())
                          for i in (out.token_index, ref))
        agreement = len(kept & kept_ref) / len(kept_ref)
        assert agreement >= MIN_KEPT_AGREEMENT, agreement


def test_amp_optim_wrapper_train_step_on_cpu(monkeypatch):
    """mmengine's AmpOptimWrapper(dtype='bfloat16'), as documented, through
    ``model.train_step``. mmengine 0.10.7 refuses to build it without a GPU
    (an assert on CUDA/NPU/MLU/MUSA); only that check is bypassed here, its
    autocast and update run as they are."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.optim.optimizer import amp_optimizer_wrapper
    monkeypatch.setattr(amp_optimizer_wrapper, 'is_cuda_available',
                        lambda: True)
    model = build_toy().train()
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'evad_toy_ava.py'))
    optim_cfg = copy.deepcopy(cfg.optim_wrapper)
    optim_cfg.update(type='AmpOptimWrapper', dtype='bfloat16')
    with pytest.warns(UserWarning, match='CUDA'):  # GradScaler: disabled
        optim_wrapper = build_optim_wrapper(model, optim_cfg)
    seen = []
    model.action_head.encoder_to_decoder.register_forward_hook(
        lambda m, i, o: seen.append(o.dtype))
    before = model.backbone.blocks[1].attn.qkv.weight.detach().clone()
    log_vars = model.train_step(batch([2, 1]), optim_wrapper)
    assert seen == [torch.bfloat16]
    assert all(torch.isfinite(torch.as_tensor(v)) for v in log_vars.values())
    after = model.backbone.blocks[1].attn.qkv.weight
    assert after.dtype == torch.float32 and not torch.equal(before, after)


# every shipped config's model, shrunk for the CPU (same types)
SMALL_VIT = dict(img_size=64, embed_dims=64, depth=4, num_heads=2,
                 num_frames=8, prune_layers=(1, 2), out_indices=(0, 1, 2, 3))
SMALL_ACTION_HEAD = dict(embed_dims=32, depth=2, num_heads=2,
                         hidden_channels=16)
# values that select no other code path where dtypes could differ
NO_LAYOUT_KEYS = ('num_classes', 'loss_weight', 'stage_loss_weights',
                  'keyframe_weight', 'pos_grid', 'test_cfg')


def shrink(cfg):
    """A shipped model config at test size (same types); returns (cfg,
    frames)."""
    backbone = cfg.backbone
    for c in (cfg, backbone):
        c.pop('init_cfg', None)
    kind = backbone.type.split('.')[-1]  # without a registry scope
    if backbone.get('patch_embed_cfg') or backbone.get('depth') == 18:
        return cfg, backbone.get('num_frames', 8)  # toy models: small
    width = 64
    if kind == 'EVADViT':
        backbone.update(SMALL_VIT)
    elif kind == 'VisionTransformer':
        backbone.update(embed_dims=width, depth=2, num_heads=2, num_frames=4)
    else:  # SlowOnly-R50: 1/8 of the channels, stages 32-256 wide
        backbone.base_channels = 8
        width = 256
    frames = backbone.get('num_frames', 4)  # SlowOnly: 4-frame clips
    if cfg.type == 'Recognizer3D':
        cfg.cls_head.update(in_channels=width, num_classes=5)
    elif cfg.type == 'FastRCNN':
        cfg.roi_head.bbox_head.update(in_channels=width, **SMALL_ACTION_HEAD)
    else:
        neck = cfg.neck.in_channels
        cfg.neck.in_channels = ([c // 8 for c in neck] if isinstance(
            neck, (list, tuple)) else width)
        if cfg.action_head.embed_dims > 128:
            cfg.action_head.update(in_channels=width, **SMALL_ACTION_HEAD)
        cfg.rpn_head.num_proposals = min(cfg.rpn_head.num_proposals, 10)
    return cfg, frames


def model_layout(cfg):
    """The shrunk model without :data:`NO_LAYOUT_KEYS`, keep rates reduced
    to whether they prune; configs with one layout run the same code."""
    if isinstance(cfg, dict):
        return {
            k: (any(r < 1 for r in (v if isinstance(v, (list, tuple)) else
                                    [v])) if k == 'keep_rate' else
                model_layout(v))
            for k, v in cfg.items() if k not in NO_LAYOUT_KEYS
        }
    if isinstance(cfg, (list, tuple)):
        return [model_layout(v) for v in cfg]
    return cfg


SHIPPED = sorted(
    osp.relpath(p, REPO)
    for p in glob.glob(osp.join(REPO, 'configs', '*.py')) +
    glob.glob(osp.join(REPO, 'configs', 'mixing', '*.py')))


@functools.lru_cache(maxsize=None)
def shipped_layouts():
    """{config: first config with its model layout} over :data:`SHIPPED`."""
    first_of_layout, tested_as = {}, {}
    for config in SHIPPED:
        cfg, frames = shrink(copy.deepcopy(Config.fromfile(
            osp.join(REPO, config)).model))
        layout = json.dumps(model_layout(cfg.to_dict()), sort_keys=True,
                            default=str) + f' frames={frames}'
        tested_as[config] = first_of_layout.setdefault(layout, config)
    return tested_as


def test_the_layouts_cover_every_shipped_config():
    layouts = shipped_layouts()
    assert len(layouts) >= 17 and 'configs/evad_vitl_ava.py' in layouts
    # e.g. the data sets' configs share the model of evad_vitb_ava.py, but
    # rho 1.0 runs other code than rho 0.7
    assert layouts['configs/evad_vitb_ucf101_24.py'] == \
        'configs/evad_vitb_ava.py'
    assert layouts['configs/evad_vitb_ava_rho1.0.py'] == \
        'configs/evad_vitb_ava_rho1.0.py'


def autocast_dtype(cfg):
    """bfloat16, but float16 for a recogniser: mmaction2 1.2.0's
    ``BaseHead.loss_by_feat`` converts the class scores to numpy for its
    accuracy, and numpy has no bfloat16 (``TypeError: Got unsupported
    ScalarType BFloat16``)."""
    return torch.float16 if cfg.type == 'Recognizer3D' else torch.bfloat16


@pytest.mark.parametrize('config', SHIPPED)
def test_mixed_precision_training_step_of_every_shipped_config(config):
    """One training step under CPU autocast for each model layout; a config
    sharing an earlier one's layout is skipped with its name."""
    from tests.test_mixing import clips
    tested_as = shipped_layouts()[config]
    if tested_as != config:
        pytest.skip(f'same model layout as {tested_as}')
    cfg, frames = shrink(copy.deepcopy(Config.fromfile(
        osp.join(REPO, config)).model))
    dtype = autocast_dtype(cfg)
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    model.train()
    if cfg.type == 'Recognizer3D':
        from mmaction.structures import ActionDataSample
        samples = [ActionDataSample().set_gt_label(label) for label in (1, 3)]
        data = dict(inputs=[
            torch.randint(0, 256, (1, 3, frames, 64, 64), dtype=torch.uint8)
            for _ in samples
        ], data_samples=samples)
    else:
        num_classes = (cfg.roi_head.bbox_head if cfg.type == 'FastRCNN' else
                       cfg.action_head).num_classes
        data = clips(frames, num_boxes=(2, 1), num_classes=num_classes)
    data = model.data_preprocessor(data, training=True)
    seen = set()
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            m.register_forward_hook(lambda m, i, o: seen.add(o.dtype))
    with torch.autocast('cpu', dtype=dtype):
        losses = model(**data, mode='loss')
    assert dtype in seen  # autocast was on
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
