"""What only a GPU can check (marker ``cuda``; every test is skipped when
``torch.cuda.is_available()`` is False, as on a CPU-only CI). Run them all,
with the benchmarks, through ``tools/gpu_check.sh``.

- mmcv was built with CUDA ops, and its CUDA RoIAlign and nms agree with the
  CPU ones;
- the ViT-B EVAD gives the same outputs on CUDA as on CPU, at rho 1.0 and
  0.7;
- fused attention (``scaled_dot_product_attention``) on CUDA equals eager,
  in inference and in a training step;
- a training step under mmengine's ``AmpOptimWrapper`` with float16 and
  bfloat16 trains;
- two-process NCCL training equals one process with the whole batch
  (with two GPUs).
"""
import importlib.util
import os.path as osp
import sys
import warnings

import pytest
import torch

from evad_mm.registry import MODELS
from evad_mm.utils.device import MMCV_CUDA_INSTALL_HINT, mmcv_has_cuda_ops
from tests.conftest import (REPO, TOY_EVAD_LAYOUT, action_samples,
                            toy_model_cfg)
from tests.test_toy_training import toy_dir  # noqa: F401 (fixture)
from tests.test_toy_training import (MIM, _free_port, assert_same_updates,
                                     assert_same_weights, load_weights, run,
                                     write_config)

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason='needs a CUDA GPU (torch.cuda.is_available() is False)'),
]

VITB_CONFIG = osp.join(REPO, 'configs', 'evad_vitb_ava.py')
# the toy model with test_toy_training's small sizes, on 8 x 64 x 64 clips
TINY = dict(
    backbone=dict(img_size=64, embed_dims=64, depth=4, prune_layers=(1, 2),
                  out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=64),
    action_head=dict(in_channels=64, embed_dims=64, pos_grid=(4, 4, 4)))


@pytest.fixture(autouse=True)
def exact_float32():
    """Full float32 matmuls and convolutions (no TF32) for comparisons."""
    matmul, cudnn = (torch.backends.cuda.matmul.allow_tf32,
                     torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = matmul
    torch.backends.cudnn.allow_tf32 = cudnn


def test_mmcv_was_built_with_cuda_ops():
    assert mmcv_has_cuda_ops(), MMCV_CUDA_INSTALL_HINT


@pytest.mark.parametrize('sampling_ratio', [2, 0])
def test_roi_align_cuda_matches_cpu(sampling_ratio):
    from mmcv.ops import RoIAlign
    g = torch.Generator().manual_seed(0)
    feat = torch.randn(2, 16, 24, 40, generator=g)
    xy = torch.rand(30, 2, generator=g) * torch.tensor([30., 18.])
    wh = torch.rand(30, 2, generator=g) * 10 + 0.5
    rois = torch.cat([torch.randint(0, 2, (30, 1), generator=g).float(), xy,
                      xy + wh], 1)
    roi_align = RoIAlign((7, 7), 0.5, sampling_ratio, aligned=True)
    outs, grads = [], []
    for device in ('cpu', 'cuda'):
        x = feat.to(device).requires_grad_()
        out = roi_align(x, rois.to(device))
        out.backward(torch.ones_like(out))
        outs.append(out.detach().cpu())
        grads.append(x.grad.cpu())
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-4)


def test_nms_cuda_matches_cpu():
    from mmcv.ops import batched_nms, nms
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(300, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + 5 + torch.rand(300, 2, generator=g) * 30], 1)
    scores = torch.rand(300, generator=g)
    labels = torch.randint(0, 3, (300, ), generator=g)
    _, keep_cpu = nms(boxes, scores, 0.5)
    _, keep_gpu = nms(boxes.cuda(), scores.cuda(), 0.5)
    assert 0 < len(keep_cpu) < 300
    assert keep_gpu.cpu().tolist() == keep_cpu.tolist()
    cfg = dict(type='nms', iou_threshold=0.5)
    _, keep_cpu = batched_nms(boxes, scores, labels, cfg)
    _, keep_gpu = batched_nms(boxes.cuda(), scores.cuda(), labels.cuda(), cfg)
    assert keep_gpu.cpu().tolist() == keep_cpu.tolist()


@pytest.fixture(scope='module')
def vitb():
    """The ViT-B EVAD with random weights (no download), in eval mode, with
    one localization stage: untrained, the six refinement stages amplify
    rounding chaotically (on CPU, fused vs eager attention: backbone tokens
    within 3e-6, final boxes 85 px apart; after one stage 2e-6 relative),
    so only one stage gives a comparison that can tell a bug from
    rounding. Encoder, FPN, RoIAlign and the action head run in full."""
    from evad_mm.apis import RandomWeightsWarning, init_detector
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RandomWeightsWarning)
        model = init_detector(VITB_CONFIG, device='cpu')
    model.roi_head.num_stages = 1
    return model


def _outputs(model, inputs):
    """The kept token positions (sorted), the encoder's tokens and keyframe
    maps, then boxes (pixels), person scores and action probabilities."""
    with torch.no_grad():
        encoded = model.backbone(inputs)
        outputs = model(inputs, mode='tensor')
    return dict(
        kept=encoded.token_index.sort(1).values.cpu(),
        tokens=encoded.tokens.cpu(),
        keyframe_maps=torch.cat([f.flatten(1) for f in encoded.keyframe_feats],
                                1).cpu(),
        **dict(zip(('boxes', 'person_scores', 'action_scores'),
                   (t.cpu() for t in outputs))))


def _assert_same_outputs(actual, expected):
    # the same tokens survive the pruning, then the same values
    assert torch.equal(actual.pop('kept'), expected.pop('kept'))
    for name, value in expected.items():
        torch.testing.assert_close(
            actual[name], value, rtol=1e-3, atol=1e-3,
            msg=lambda m, name=name: f'{name}: {m}')


@pytest.mark.parametrize('keep_rate', [1.0, 0.7])
def test_vitb_outputs_on_cuda_match_cpu(vitb, keep_rate):
    vitb.set_keep_rate(keep_rate)
    inputs = torch.randn(1, 3, 16, 224, 224,
                         generator=torch.Generator().manual_seed(0))
    expected = _outputs(vitb.cpu(), inputs)
    vitb.cuda()
    try:
        actual = _outputs(vitb, inputs.cuda())
    finally:
        vitb.cpu()
    _assert_same_outputs(actual, expected)


@pytest.mark.parametrize('keep_rate', [1.0, 0.7])
def test_fused_attention_on_cuda_equals_eager_in_inference(vitb, keep_rate):
    vitb.set_keep_rate(keep_rate)
    inputs = torch.randn(2, 3, 16, 224, 224,
                         generator=torch.Generator().manual_seed(1)).cuda()
    vitb.cuda()
    try:
        vitb.set_fused_attn(False)
        eager = _outputs(vitb, inputs)
        vitb.set_fused_attn(True)
        fused = _outputs(vitb, inputs)
    finally:
        vitb.cpu()
    _assert_same_outputs(fused, eager)


def _tiny_data(num_boxes, seed=0):
    """A batch as mmaction2's dataloader gives it: uint8 clips and
    ActionDataSamples."""
    g = torch.Generator().manual_seed(seed)
    return dict(
        inputs=[
            torch.randint(0, 256, (3, 8, 64, 64), dtype=torch.uint8,
                          generator=g) for _ in num_boxes
        ],
        data_samples=action_samples(num_boxes, size=(64, 64), seed=seed))


def _build_tiny(seed=0):
    torch.manual_seed(seed)
    model = MODELS.build(toy_model_cfg(**TINY))
    model.init_weights()
    return model.cuda().train()


def test_fused_attention_on_cuda_equals_eager_in_training():
    results = []
    for fused in (False, True):
        model = _build_tiny()
        model.set_fused_attn(fused)
        data = model.data_preprocessor(_tiny_data([2, 1]), training=True)
        losses = model(**data, mode='loss')
        total = sum(v for k, v in losses.items() if 'loss' in k)
        total.backward()
        grads = {n: p.grad.detach().clone()
                 for n, p in model.named_parameters() if p.grad is not None}
        results.append((total.item(), grads))
    (loss_eager, grads_eager), (loss_fused, grads_fused) = results
    assert loss_fused == pytest.approx(loss_eager, rel=1e-4)
    assert grads_fused.keys() == grads_eager.keys()
    for name, grad in grads_eager.items():
        scale = grad.abs().max().item()
        diff = (grads_fused[name] - grad).abs().max().item()
        assert diff <= 1e-3 * scale + 1e-6, (name, diff, scale)


@pytest.mark.parametrize('dtype', ['float16', 'bfloat16'])
def test_amp_training_steps_train(dtype):
    """mmengine's AmpOptimWrapper (autocast, and a loss scaler for float16)
    fits one batch: finite losses that fall, finite updated weights."""
    from mmengine.optim import build_optim_wrapper
    if dtype == 'bfloat16' and not torch.cuda.is_bf16_supported():
        pytest.skip(f'{torch.cuda.get_device_name()} has no bfloat16')
    model = _build_tiny()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optim_wrapper = build_optim_wrapper(
        model,
        dict(type='AmpOptimWrapper', dtype=dtype,
             optimizer=dict(type='AdamW', lr=1e-3)))
    losses = [
        model.train_step(_tiny_data([2, 1]), optim_wrapper)['loss'].item()
        for _ in range(8)
    ]
    assert all(torch.isfinite(torch.tensor(losses))), losses
    assert losses[-1] < losses[0], losses
    moved = 0
    for name, param in model.named_parameters():
        assert torch.isfinite(param).all(), name
        moved += not torch.equal(param, before[name])
    assert moved > len(before) // 2


@pytest.mark.skipif(
    torch.cuda.device_count() < 2, reason='needs 2 GPUs for NCCL training')
def test_two_process_nccl_training_matches_one_process(toy_dir):
    """As the gloo test of test_toy_training.py, on 2 GPUs with NCCL: the
    toy layout without the stem's BatchNorm, two updates of plain SGD."""
    env = dict(NVIDIA_TF32_OVERRIDE='0', CUDA_VISIBLE_DEVICES='0,1')
    configs = {
        name: write_config(toy_dir, f'nccl_{name}', batch=batch, iters=2,
                           base=TOY_EVAD_LAYOUT)
        for name, batch in (('one', 4), ('two', 2))
    }
    run([MIM, 'train', 'mmaction', configs['one'], '--work-dir', 'w_one_gpu'],
        toy_dir, **env)
    mmaction_train = osp.join(
        osp.dirname(importlib.util.find_spec('mmaction').origin), '.mim',
        'tools', 'train.py')
    log = run([
        sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
        f'--master_port={_free_port()}', mmaction_train, configs['two'],
        '--work-dir', 'w_two_gpus', '--launcher', 'pytorch', '--cfg-options',
        'env_cfg.dist_cfg.backend=nccl'
    ], toy_dir, **env)
    assert "backend='nccl'" in log  # the runner's config dump
    one, two = toy_dir / 'w_one_gpu', toy_dir / 'w_two_gpus'
    ranks = [load_weights(two / f'rank{r}.pth') for r in (0, 1)]
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])
    init = load_weights(two / 'rank0_init.pth')
    assert_same_weights(init, load_weights(one / 'rank0_init.pth'), 0)
    assert_same_updates(init, ranks[0], load_weights(one / 'rank0.pth'),
                        rtol=1e-2)
