"""tools/analysis/get_flops.py and benchmark.py on the toy config (CPU)."""
import json
import math
import os.path as osp
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.conftest import TOY_EVAD_LAYOUT, load_tool

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOLS = osp.join(REPO, 'tools', 'analysis')
# EVAD's own ViT, whose FLOPs are counted by hand below
TOY = TOY_EVAD_LAYOUT
SHAPE = ['8', '64', '64']
PARTS = ('backbone', 'neck', 'localization', 'context_refinement')


def _load(name):
    return load_tool('analysis', name)


@pytest.fixture(scope='module')
def get_flops():
    return _load('get_flops')


@pytest.fixture(scope='module')
def benchmark():
    return _load('benchmark')


@pytest.fixture(scope='module')
def toy_flops(get_flops):
    """get_flops results at keep rates 1.0 and 0.7, via main()."""
    return {
        rate: get_flops.main([TOY, '--shape', *SHAPE, '--keep-rate',
                              str(rate), '--json'])
        for rate in (1.0, 0.7)
    }


def _last_json_line(text):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return json.loads(lines[-1])


def test_get_flops_cli_prints_json_last():
    out = subprocess.run(
        [sys.executable, osp.join(TOOLS, 'get_flops.py'), TOY, '--shape',
         *SHAPE, '--keep-rate', '0.7', '--json'],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = _last_json_line(out.stdout)
    for key in ('gflops', 'shape', 'keep_rate', *PARTS):
        assert key in result
    assert result['shape'] == [8, 64, 64]
    assert result['keep_rate'] == pytest.approx(0.7)
    assert result['gflops'] > 0


def test_parts_sum_to_total_and_pruning_saves(toy_flops):
    for rate, result in toy_flops.items():
        assert all(result[p] > 0 for p in PARTS), result
        assert sum(result[p] for p in PARTS) == pytest.approx(
            result['gflops'], rel=1e-9)
        assert result['other'] == 0
        assert result['keep_rate'] == pytest.approx(rate)
    full, pruned = toy_flops[1.0], toy_flops[0.7]
    assert pruned['gflops'] < full['gflops']
    assert pruned['backbone'] < full['backbone']
    assert pruned['context_refinement'] < full['context_refinement']
    # the keyframe-only branches do not see the pruning
    assert pruned['neck'] == full['neck']
    assert pruned['localization'] == full['localization']
    # all 20 proposals of the toy config go to the action head by default
    assert full['num_actors'] == pruned['num_actors'] == 20


def _toy_backbone_flops(keep_rate, n=64, c=128, depth=6,
                        prune_layers=(2, 3, 4)):
    """fvcore count of the toy encoder on 8x64x64 (t=4, 4x4 grid): patch
    conv, per block LN 5NC, qkv 3NC^2, attention 2N^2C, proj NC^2, LN 5MC,
    MLP 8MC^2 on the M kept tokens, final LN."""
    flops = n * c * (3 * 2 * 16 * 16)
    for i in range(depth):
        m = n
        if i in prune_layers and keep_rate < 1:
            m = math.ceil(keep_rate * n)
        flops += 5 * n * c + 4 * n * c * c + 2 * n * n * c
        flops += 5 * m * c + 8 * m * c * c
        n = m
    return (flops + 5 * n * c) / 1e9


@pytest.mark.parametrize('rate', [1.0, 0.7])
def test_backbone_count_is_exact(toy_flops, rate):
    """Attention matmuls counted once each, pruned tokens not at all."""
    assert toy_flops[rate]['backbone'] == pytest.approx(
        _toy_backbone_flops(rate), rel=1e-12)


def test_fused_and_eager_attention_count_the_same(get_flops):
    model = get_flops.build_detector(TOY, keep_rate=1.0)
    shape = [int(s) for s in SHAPE]
    fused = get_flops.count_flops(model, shape)
    model.set_fused_attn(False)
    eager = get_flops.count_flops(model, shape)
    for key in ('gflops', *PARTS):
        assert fused[key] == pytest.approx(eager[key], rel=1e-12)


def test_fixed_actor_count_is_counted_through_predict(get_flops):
    """--num-actors N: EVAD.predict with roi_head.test_cfg.num_actors=N;
    fewer actors, cheaper decoder, the rest unchanged; with every query the
    count of forward_tensors."""
    shape = [int(s) for s in SHAPE]
    all_queries = get_flops.count_flops(
        get_flops.build_detector(TOY, keep_rate=1.0), shape)
    counts = {}
    for n in (2, 20):
        counts[n] = get_flops.main([
            TOY, '--shape', *SHAPE, '--keep-rate', '1.0', '--num-actors',
            str(n), '--json'
        ])
        assert counts[n]['num_actors'] == n
    assert counts[2]['context_refinement'] < all_queries['context_refinement']
    for key in ('backbone', 'neck', 'localization'):
        assert counts[2][key] == all_queries[key]
    for key in ('gflops', *PARTS, 'other'):
        assert counts[20][key] == all_queries[key]


def test_build_detector_applies_the_overrides():
    utils = load_tool('analysis', 'analysis_utils')
    model = utils.build_detector(
        TOY, keep_rate=[0.5, 0.6, 0.7], fused_attn=False, num_actors=3)
    assert not model.training
    assert model.backbone.keep_rate == (0.5, 0.6, 0.7)
    assert not any(m.fused_attn for m in model.modules()
                   if hasattr(m, 'fused_attn'))
    test_cfg = model.roi_head.test_cfg
    assert test_cfg.num_actors == 3 and test_cfg.get('nms') is None
    assert utils.default_shape(model) == [8, 128, 128]  # img_size=128
    # the config's own rule otherwise
    assert utils.build_detector(TOY).roi_head.test_cfg.get(
        'num_actors') is None


def test_sdpa_handle_counts_two_matmuls(get_flops):
    from mmengine.analysis import FlopAnalyzer

    class SDPA(nn.Module):

        def forward(self, q, k, v):
            return F.scaled_dot_product_attention(q, k, v)

    q = torch.randn(2, 3, 5, 4)
    k = torch.randn(2, 3, 7, 4)
    v = torch.randn(2, 3, 7, 6)
    analyzer = FlopAnalyzer(SDPA(), (q, k, v))
    analyzer.unsupported_ops_warnings(False)
    assert analyzer.total() == 0  # why the handle is needed
    analyzer = FlopAnalyzer(SDPA(), (q, k, v))
    analyzer.set_op_handle('aten::scaled_dot_product_attention',
                           get_flops.sdpa_flop_jit)
    assert analyzer.total() == 2 * 3 * 5 * 7 * (4 + 6)


def test_score_matmul_is_not_counted(get_flops):
    from mmengine.analysis import FlopAnalyzer

    class Products(nn.Module):

        def forward(self, attn, w, a, b):
            return torch.matmul(w, attn), torch.matmul(a, b)

    inputs = (torch.randn(1, 2, 3, 3), torch.randn(3), torch.randn(4, 5),
              torch.randn(5, 6))
    analyzer = FlopAnalyzer(Products(), inputs)
    analyzer.set_op_handle('aten::matmul', get_flops.matmul_flop_jit)
    assert analyzer.total() == 4 * 5 * 6


def test_benchmark_one_result_per_keep_rate(benchmark, capsys):
    report = benchmark.main([
        TOY, '--shape', *SHAPE, '--keep-rates', '1.0', '0.7', '--iters',
        '1', '--warmup', '0', '--repeats', '1', '--json'
    ])
    printed = _last_json_line(capsys.readouterr().out)
    assert printed['results'] == json.loads(json.dumps(report['results']))
    results = printed['results']
    assert [r['keep_rate'] for r in results] == [1.0, 0.7]
    for r in results:
        assert r['clips_per_s'] > 0
        assert r['peak_mem_mb'] > 0
        assert r['attention'] == 'fused'
        assert r['actors_per_call'] > 0
    assert results[0]['speedup'] == 1.0
    assert results[1]['speedup'] == pytest.approx(
        results[1]['clips_per_s'] / results[0]['clips_per_s'])


def test_benchmark_train_step_and_attention_variants(benchmark):
    report = benchmark.main([
        TOY, '--shape', *SHAPE, '--keep-rates', '1.0', '--attention',
        'fused', 'eager', '--train', '--iters', '1', '--warmup', '0',
        '--repeats', '2', '--batch-size', '2'
    ])
    assert report['mode'] == 'train'
    results = report['results']
    assert [(r['keep_rate'], r['attention']) for r in results] == [
        (1.0, 'fused'), (1.0, 'eager')
    ]
    for r in results:
        assert len(r['clips_per_s_all']) == 2
        assert r['actors_per_call'] == 2 * 2  # two GT actors per clip
        assert r['peak_mem_mb'] > 0


def test_cpu_peak_memory_tracks_tensor_allocations(benchmark):
    def step():
        big = torch.ones(2**21)  # 8 MiB, freed before the next one
        del big
        small = torch.ones(2**18)  # 1 MiB
        return int(small[0])

    mem = benchmark.peak_memory(step, torch.device('cpu'))
    assert mem['peak_mem_mb'] == pytest.approx(8.0, abs=0.5)


def test_benchmark_rejects_bad_arguments(benchmark):
    with pytest.raises(SystemExit):
        benchmark.parse_args([TOY, '--iters', '0'])
    with pytest.raises(SystemExit):
        benchmark.parse_args([TOY, '--amp', 'fp8'])


def test_benchmark_fixed_actor_count(benchmark):
    report = benchmark.main([
        TOY, '--shape', *SHAPE, '--keep-rates', '0.7', '--batch-size', '2',
        '--num-actors', '3', '--iters', '1', '--warmup', '0', '--repeats',
        '1', '--no-memory'
    ])
    assert report['results'][0]['actors_per_call'] == 2 * 3


@pytest.mark.parametrize('amp,train', [('bf16', False), ('bf16', True),
                                       ('fp16', True)])
def test_benchmark_mixed_precision(benchmark, amp, train, monkeypatch):
    """--amp: the step under torch.autocast with that dtype (seen in the
    decoder's output), the loss scaled for fp16 training."""
    seen = {}
    from evad_mm.models.roi_heads import ContextRefinementHead
    forward = ContextRefinementHead.forward

    def spy(self, *args, **kwargs):
        logits = forward(self, *args, **kwargs)
        seen['dtype'] = logits[-1].dtype
        return logits

    monkeypatch.setattr(ContextRefinementHead, 'forward', spy)
    report = benchmark.main([
        TOY, '--shape', *SHAPE, '--keep-rates', '0.7', '--amp', amp,
        '--iters', '1', '--warmup', '0', '--repeats', '1', '--json'
    ] + (['--train'] if train else []))
    assert report['amp'] == amp
    assert seen['dtype'] == benchmark.AMP_DTYPES[amp]
    result, = report['results']
    assert result['clips_per_s'] > 0 and result['peak_mem_mb'] > 0
