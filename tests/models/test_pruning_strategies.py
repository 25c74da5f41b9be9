"""EVADViT's pruning strategies: keyframe-centric (EVAD), random and
unified, as the paper's Table 1b/1c ablations need them."""
import pytest
import torch
from torch import nn

import evad_mm  # noqa: F401
from evad_mm.models.layers.token_pruning import (PRUNING_STRATEGIES,
                                                 keyframe_slice_tokens,
                                                 num_kept_tokens,
                                                 random_non_keyframe_tokens,
                                                 select_non_keyframe_tokens,
                                                 select_tokens_unified)
from evad_mm.registry import MODELS
from tests.conftest import TINY_EVADVIT, action_samples, toy_model_cfg

# 4 slices of 4x4 tokens: N = 64, Nk = 16
TINY = TINY_EVADVIT
GRID = (4, 4, 4)
NUM_KEY = 16
KEYFRAME = set(range(2 * NUM_KEY, 3 * NUM_KEY))  # slice t // 2 = 2


def build(**kwargs):
    torch.manual_seed(0)
    model = MODELS.build({**TINY, **kwargs})
    model.init_weights()
    return model.eval()


def clip(batch=2, seed=1):
    return torch.randn(batch, 3, 8, 64, 64,
                       generator=torch.Generator().manual_seed(seed))


def run(model, x):
    """Output and the per-layer kept positions of one forward pass."""
    with torch.no_grad(), model.record_kept_tokens() as kept:
        out = model(x)
    assert len(kept) == 1
    return out, kept[0]


# ---------------------------------------------------------------- functions


def test_random_non_keyframe_tokens():
    g = torch.Generator().manual_seed(0)
    keep = random_non_keyframe_tokens(3, 64, 16, 0.5, generator=g)
    assert keep.shape == (3, num_kept_tokens(64, 0.5) - 16)
    for row in keep:
        assert len(set(row.tolist())) == len(row)  # no token twice
        assert 0 <= row.min() and row.max() < 48
    assert not torch.equal(keep[0].sort().values, keep[1].sort().values)
    again = random_non_keyframe_tokens(
        3, 64, 16, 0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(keep, again)
    assert random_non_keyframe_tokens(3, 64, 16, 1.0) is None
    # as many as the attention ranking keeps, also when k < Nk
    scores = torch.rand(2, 64)
    for rate in (0.9, 0.5, 0.1):
        assert random_non_keyframe_tokens(2, 64, 16, rate).shape == \
            select_non_keyframe_tokens(scores, 16, rate).shape


def test_select_tokens_unified_is_the_sorted_top_k_of_all():
    scores = torch.rand(2, 64)
    keep = select_tokens_unified(scores, 0.3)
    k = num_kept_tokens(64, 0.3)
    assert keep.shape == (2, k)
    assert torch.equal(keep, keep.sort(dim=1).values)
    for row, s in zip(keep, scores):
        assert set(row.tolist()) == set(s.topk(k).indices.tolist())
    assert select_tokens_unified(scores, 1.0) is None


def test_keyframe_slice_tokens_scatters_the_slice():
    B, M, C = 2, 20, 3
    index = torch.stack([torch.randperm(64)[:M] for _ in range(B)])
    x = torch.randn(B, M, C)
    out = keyframe_slice_tokens(x, index, GRID, 2)
    assert out.shape == (B, NUM_KEY, C)
    expected = torch.zeros(B, NUM_KEY, C)
    for b in range(B):
        for j in range(M):
            if index[b, j].item() in KEYFRAME:
                expected[b, index[b, j] - 2 * NUM_KEY] = x[b, j]
    assert torch.equal(out, expected)


# ------------------------------------------------------------------ EVADViT


def test_default_is_keyframe_centric():
    x = clip()
    default, kept_default = run(build(), x)
    keyframe, kept_keyframe = run(build(pruning='keyframe'), x)
    assert torch.equal(default.tokens, keyframe.tokens)
    assert all(map(torch.equal, kept_default, kept_keyframe))


@pytest.mark.parametrize('pruning', PRUNING_STRATEGIES)
def test_shapes_and_kept_counts_equal_the_keyframe_strategys(pruning):
    x = clip()
    torch.manual_seed(3)
    out, kept = run(build(pruning=pruning), x)
    _, kept_keyframe = run(build(), x)
    assert [k.shape for k in kept] == [k.shape for k in kept_keyframe]
    assert [k.shape[1] for k in kept] == [45, 32]  # ceil(.7*64), ceil(.7*45)
    assert torch.equal(kept[-1], out.token_index)
    assert out.tokens.shape == (2, 32, 32)
    assert out.grid == GRID
    assert [f.shape for f in out.keyframe_feats] == [(2, 32, 4, 4)] * 4
    for row in out.token_index:  # every token once
        assert len(set(row.tolist())) == len(row)


@pytest.mark.parametrize('pruning', PRUNING_STRATEGIES)
def test_keep_rate_one_is_bit_identical_for_every_strategy(pruning):
    x = clip()
    ref, kept_ref = run(build(keep_rate=1.0), x)
    out, kept = run(build(keep_rate=1.0, pruning=pruning), x)
    assert torch.equal(out.tokens, ref.tokens)
    assert torch.equal(out.token_index, ref.token_index)
    assert all(map(torch.equal, out.keyframe_feats, ref.keyframe_feats))
    assert [k.shape[1] for k in kept] == [64, 64]


def test_random_differs_from_keyframe_and_keeps_the_keyframe():
    x = clip()
    keyframe, _ = run(build(), x)
    model = build(pruning='random')
    torch.manual_seed(5)
    random, _ = run(model, x)
    for a, b in zip(random.token_index, keyframe.token_index):
        assert set(a[:NUM_KEY].tolist()) == KEYFRAME
        assert set(a.tolist()) != set(b.tolist())
    torch.manual_seed(5)  # torch's global generator: seeded, repeatable
    again, _ = run(model, x)
    assert torch.equal(again.token_index, random.token_index)
    assert torch.equal(again.tokens, random.tokens)
    other, _ = run(model, x)
    assert not torch.equal(other.token_index, random.token_index)


@pytest.mark.parametrize('fused', [True, False])
def test_random_computes_no_attention_scores(fused, monkeypatch):
    from evad_mm.models.layers import transformer

    def forbidden(*args, **kwargs):
        raise AssertionError('importance scores computed')

    monkeypatch.setattr(transformer.Attention, 'importance_scores',
                        forbidden)
    monkeypatch.setattr(transformer.Attention,
                        '_ranking_pass', forbidden)
    out, kept = run(build(pruning='random', fused_attn=fused), clip())
    assert [k.shape[1] for k in kept] == [45, 32]
    with pytest.raises(AssertionError, match='scores computed'):
        run(build(), clip())


def test_unified_can_drop_keyframe_tokens_and_fills_the_maps_with_zeros():
    model = build(pruning='unified', keep_rate=0.3)
    model.norm = nn.Identity()  # tokens == the last block's output
    out, kept = run(model, clip())
    assert [k.shape[1] for k in kept] == [20, 6]  # ceil(.3*64), ceil(.3*20)
    last = out.keyframe_feats[-1].flatten(2).transpose(1, 2)  # (B, hw, C)
    dropped_some = False
    for b in range(2):
        index = out.token_index[b].tolist()
        on_key = [i for i in index if i in KEYFRAME]
        dropped_some |= len(on_key) < NUM_KEY
        # surviving keyframe tokens first, in raster order
        assert index[:len(on_key)] == sorted(on_key)
        for j, i in enumerate(index):
            if i in KEYFRAME:
                assert torch.equal(last[b, i - 2 * NUM_KEY], out.tokens[b, j])
        missing = sorted(KEYFRAME - set(on_key))
        assert torch.all(last[b, [i - 2 * NUM_KEY for i in missing]] == 0)
    assert dropped_some
    # before the first pruning block the keyframe map is complete
    assert torch.all(out.keyframe_feats[0].abs().sum(1) > 0)


def test_unified_ranks_by_the_same_scores_as_keyframe():
    """At the first pruning block both rank one attention map (w_kf = 1):
    unified keeps its top ceil(rho*N) of all tokens."""
    x = clip()
    keyframe = build(keep_rate=(0.5, 1.0))
    unified = build(pruning='unified', keep_rate=(0.5, 1.0))
    scores = {}

    def hook(module, args, output):
        scores.setdefault('first', output[1])

    keyframe.blocks[1].attn.register_forward_hook(hook)
    run(keyframe, x)
    first = scores['first']
    _, kept = run(unified, x)
    # the sequence entering the first block: keyframe slice first
    order = torch.cat([
        torch.arange(2 * NUM_KEY, 3 * NUM_KEY),
        torch.arange(0, 2 * NUM_KEY),
        torch.arange(3 * NUM_KEY, 64)])
    for b in range(2):
        top = first[b].topk(32).indices
        assert set(kept[0][b].tolist()) == set(order[top].tolist())


@pytest.mark.parametrize('pruning', ['random', 'unified'])
def test_training_backward(pruning):
    model = build(pruning=pruning, keep_rate=0.4).train()
    out = model(clip())
    loss = out.tokens.square().mean() + sum(
        f.square().mean() for f in out.keyframe_feats)
    loss.backward()
    assert model.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert model.blocks[-1].mlp.layers[1].weight.grad.abs().sum() > 0


def test_random_with_cp_gives_the_same_gradients():
    grads = []
    for with_cp in (False, True):
        model = build(pruning='random', with_cp=with_cp).train()
        torch.manual_seed(7)
        model(clip()).tokens.sum().backward()
        grads.append(model.blocks[0].attn.qkv.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_record_kept_tokens_per_call_and_only_inside():
    model = build()
    with torch.no_grad(), model.record_kept_tokens() as kept:
        model(clip(1))
        model(clip(3))
    model(clip(1))
    assert [tuple(k.shape[0] for k in call) for call in kept] == [(1, 1),
                                                                  (3, 3)]
    # prune layers at keep rate 1 are recorded too
    _, kept = run(build(keep_rate=(1.0, 0.5)), clip())
    assert [k.shape[1] for k in kept] == [64, 32]


@pytest.mark.parametrize('kwargs, match', [
    (dict(pruning='gap'), "choose one of \\('keyframe', 'random'"),
    (dict(pruning='unified', keyframe_weight=4.), 'set keyframe_weight=1'),
    (dict(pruning='random', keyframe_weight=2.), 'set keyframe_weight=1'),
])
def test_invalid_strategy_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build(**kwargs)


# ---------------------------------------------------------------- the EVAD


def test_evad_refuses_unified_with_the_reference_token_order():
    cfg = toy_model_cfg(backbone=dict(pruning='unified'),
                        action_head=dict(token_order='reference'))
    with pytest.raises(ValueError, match="token_order='position'"):
        MODELS.build(cfg)


@pytest.mark.parametrize('pruning', ['random', 'unified'])
def test_evad_trains_and_predicts(pruning):
    torch.manual_seed(0)
    model = MODELS.build(
        toy_model_cfg(backbone=dict(pruning=pruning, keep_rate=0.3)))
    model.init_weights()
    size = (64, 96)
    data = dict(
        inputs=[torch.randint(0, 256, (3, 8, *size), dtype=torch.uint8)
                for _ in range(2)],
        data_samples=action_samples([2, 1], size=size))
    batch = model.data_preprocessor(data, training=True)
    losses = model.train()(**batch, mode='loss')
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    with torch.no_grad():
        results = model.eval()(**model.data_preprocessor(data),
                               mode='predict')
    assert all(len(r.pred_instances.bboxes) >= 1 for r in results)
