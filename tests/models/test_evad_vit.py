"""EVADViT: pruning against a brute-force reference, rho=1 against
mmaction2's VisionTransformer, fused against eager attention."""
import math

import pytest
import torch

import evad_mm  # noqa: F401
from evad_mm.registry import MODELS
from tests.conftest import TINY_EVADVIT

TINY = TINY_EVADVIT


def build(**kwargs):
    torch.manual_seed(0)
    model = MODELS.build({**TINY, **kwargs})
    model.init_weights()
    return model.eval()


def saved_tensor_sizes(fn):
    """Run ``fn()``; return the element counts of the tensors autograd saved
    for the backward pass (outside checkpointed regions), and its result."""
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sizes, out


def mmaction_vit(model):
    """mmaction2's VisionTransformer holding the same weights."""
    vit = MODELS.build(
        dict(
            type='VisionTransformer',
            img_size=64,
            embed_dims=32,
            depth=4,
            num_heads=4,
            num_frames=8,
            use_mean_pooling=False,
            return_feat_map=True)).eval()
    vit.load_state_dict(model.state_dict(), strict=True)
    return vit


def brute_force(vit, clip, keep_rate, keyframe_weight, prune_layers):
    """EVAD pruning written out with full attention maps, on mmaction2's
    blocks: returns final tokens (B, M, C), their positions, and the token
    count after each block."""
    B = clip.shape[0]
    x = vit.patch_embed(clip)[0] + vit.pos_embed
    t = clip.shape[2] // 2
    hw = x.shape[1] // t
    kf = t // 2
    pos = torch.arange(t * hw)
    order = torch.cat([pos[kf * hw:(kf + 1) * hw],
                       pos[:kf * hw], pos[(kf + 1) * hw:]])
    x = x[:, order]
    index = order.repeat(B, 1)
    counts = []
    for i, blk in enumerate(vit.blocks):
        if i in prune_layers:
            a = blk.attn
            y = blk.norm1(x)
            N = y.shape[1]
            bias = torch.cat([a.q_bias, torch.zeros_like(a.v_bias), a.v_bias])
            qkv = torch.nn.functional.linear(y, a.qkv.weight, bias)
            q, k, v = qkv.reshape(B, N, 3, a.num_heads, -1).permute(
                2, 0, 3, 1, 4)
            attn = ((q * a.scale) @ k.transpose(-2, -1)).softmax(-1)
            out = (attn @ v).transpose(1, 2).reshape(B, N, -1)
            x = x + a.proj(out)
            w = torch.ones(N)
            w[:hw] = keyframe_weight
            score = (attn.mean(1) * w[None, :, None]).sum(1) / N  # (B, N)
            k_keep = math.ceil(keep_rate * N)
            if k_keep < N:
                new_x, new_index = [], []
                for b in range(B):
                    ranked = sorted(range(hw, N),
                                    key=lambda j: -score[b, j].item())
                    keep = list(range(hw)) + ranked[:k_keep - hw]
                    new_x.append(x[b, keep])
                    new_index.append(index[b, keep])
                x, index = torch.stack(new_x), torch.stack(new_index)
            x = x + blk.mlp(blk.norm2(x))
        else:
            x = blk(x)
        counts.append(x.shape[1])
    return vit.norm(x), index, counts


@pytest.mark.parametrize('keyframe_weight', [1.0, 4.0])
def test_pruning_matches_brute_force(keyframe_weight):
    model = build(keyframe_weight=keyframe_weight)
    clip = torch.randn(2, 3, 8, 64, 64)
    with torch.no_grad():
        out = model(clip)
        ref, ref_index, counts = brute_force(
            mmaction_vit(model), clip, 0.7, keyframe_weight, (1, 2))
    t, h, w = out.grid
    assert (t, h, w) == (4, 4, 4)
    n = t * h * w
    assert counts == [n, math.ceil(.7 * n), math.ceil(.7 * math.ceil(.7 * n)),
                      math.ceil(.7 * math.ceil(.7 * n))]
    assert out.tokens.shape == (2, counts[-1], 32)
    # same kept sets, same features at the same positions
    for b in range(2):
        assert set(out.token_index[b].tolist()) == set(
            ref_index[b].tolist())
        ours = out.tokens[b][out.token_index[b].argsort()]
        theirs = ref[b][ref_index[b].argsort()]
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
    # the keyframe (slice t // 2) is kept whole, first, in raster order
    key = torch.arange(h * w) + (t // 2) * h * w
    assert torch.equal(out.token_index[:, :h * w], key.expand(2, -1))
    assert len(out.keyframe_feats) == 4
    assert all(f.shape == (2, 32, h, w) for f in out.keyframe_feats)


def test_keyframe_weight_changes_the_kept_set():
    clip = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        a = build(keyframe_weight=1.0)(clip).token_index
        b = build(keyframe_weight=50.0)(clip).token_index
    assert a.shape == b.shape
    assert set(a[0].tolist()) != set(b[0].tolist())


@pytest.mark.parametrize('size', [(64, 64), (96, 128)])
def test_keep_rate_one_equals_mmaction_vit(size):
    model = build(keep_rate=1.0)
    clip = torch.randn(2, 3, 8, *size)
    with torch.no_grad():
        out = model(clip)
        ref = mmaction_vit(model)(clip).flatten(2).transpose(1, 2)
    assert out.tokens.shape == ref.shape
    restored = torch.empty_like(out.tokens)
    restored.scatter_(1, out.token_index[..., None].expand_as(out.tokens),
                      out.tokens)
    torch.testing.assert_close(restored, ref, atol=1e-5, rtol=1e-4)


def test_fused_equals_eager():
    model = build()
    clip = torch.randn(2, 3, 8, 64, 64)
    with torch.no_grad():
        fused = model(clip)
        model.set_fused_attn(False)
        eager = model(clip)
    torch.testing.assert_close(fused.tokens, eager.tokens, atol=1e-5,
                               rtol=1e-4)
    assert torch.equal(fused.token_index, eager.token_index)


def test_eager_chunks_equal_one_chunk():
    model = build()
    clip = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        whole = model(clip)
        for blk in model.blocks:
            blk.attn.chunk_size = 7
        chunked = model(clip)
    torch.testing.assert_close(whole.tokens, chunked.tokens, atol=1e-5,
                               rtol=1e-4)
    assert torch.equal(whole.token_index, chunked.token_index)


def test_keep_rate_per_layer_and_at_test_time():
    model = build(keep_rate=(0.5, 1.0))
    n = 4 * 4 * 4
    assert model(torch.randn(1, 3, 8, 64, 64)).tokens.shape[1] == \
        math.ceil(0.5 * n)
    model.keep_rate = 1.0
    assert model(torch.randn(1, 3, 8, 64, 64)).tokens.shape[1] == n


def test_odd_sizes_are_padded():
    out = build()(torch.randn(1, 3, 8, 50, 70))
    assert out.grid == (4, 4, 5)


def test_scores_carry_no_gradient_and_backward_works():
    model = build().train()
    out = model(torch.randn(1, 3, 8, 64, 64))
    loss = out.tokens.sum() + sum(f.sum() for f in out.keyframe_feats)
    loss.backward()
    assert model.blocks[0].attn.qkv.weight.grad is not None


@pytest.mark.parametrize('fused', [True, False])
def test_with_cp_gives_same_gradients(fused):
    """Activation checkpointing of every block, both halves of the pruning
    blocks included, with stochastic depth: same kept tokens, outputs and
    gradients of every parameter."""
    clip = torch.randn(2, 3, 8, 64, 64)
    runs = []
    for with_cp in (False, True):
        model = build(with_cp=with_cp, drop_path_rate=0.2).train()
        model.set_fused_attn(fused)
        torch.manual_seed(1)  # the same drop-path draws
        saved, out = saved_tensor_sizes(lambda: model(clip))
        loss = out.tokens.square().sum() + sum(
            f.square().sum() for f in out.keyframe_feats)
        loss.backward()
        runs.append((out, len(saved),
                     {n: p.grad for n, p in model.named_parameters()}))
    (plain, plain_saved, plain_grads), (cp, cp_saved, cp_grads) = runs
    assert cp_saved < plain_saved / 3  # the blocks kept no activations
    assert torch.equal(plain.token_index, cp.token_index)
    assert plain.tokens.shape[1] < 4 * 4 * 4
    torch.testing.assert_close(plain.tokens, cp.tokens)
    for name, grad in plain_grads.items():
        assert grad is not None, name
        torch.testing.assert_close(grad, cp_grads[name], msg=name)


@pytest.mark.parametrize('kwargs, match', [
    (dict(keep_rate=0.), 'keep_rate'),
    (dict(keep_rate=1.5), 'keep_rate'),
    (dict(keep_rate=(0.7, 0.7, 0.7)), 'keep_rate'),
    (dict(prune_layers=(1, 9)), 'prune_layers'),
    (dict(prune_layers=(2, 1)), 'prune_layers'),
    (dict(out_indices=(0, 0)), 'out_indices'),
    (dict(embed_dims=30), 'divisible'),
    (dict(keyframe_weight=0.), 'keyframe_weight'),
    (dict(num_frames=7), 'tubelet_size'),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MODELS.build({**TINY, **kwargs})


@pytest.mark.parametrize('shape, match', [
    ((1, 1, 8, 64, 64), 'channels'),
    ((1, 3, 6, 64, 64), 'num_frames'),
    ((1, 3, 8, 8, 64), 'smaller than one'),
    ((3, 8, 64, 64), r'\(B, C, T, H, W\)'),
])
def test_invalid_inputs(shape, match):
    with pytest.raises(ValueError, match=match):
        build()(torch.randn(*shape))


def resnet_stem(num_stages=3):
    """A tiny ResNet3dSlowOnly at stride 16 (3 stages) or 8 (2 stages)."""
    return dict(
        type='HybridPatchEmbed',
        cnn_channels=8 * 2**(num_stages - 1),
        cnn=dict(
            type='ResNet3dSlowOnly', depth=18, base_channels=8,
            pretrained=None, pretrained2d=False, lateral=False,
            num_stages=num_stages, out_indices=(num_stages - 1, ),
            conv1_kernel=(1, 7, 7), conv1_stride_t=1, pool1_stride_t=1,
            spatial_strides=(1, 2, 2)[:num_stages],
            temporal_strides=(1, ) * num_stages,
            dilations=(1, ) * num_stages, stage_blocks=(1, ) * num_stages,
            inflate=(0, 0, 1)[:num_stages]))


def test_hybrid_patch_embedding():
    """A convolutional stem in place of the linear patch embedding: same
    token grid, pruning and gradients reach the CNN."""
    model = build(patch_embed_cfg=resnet_stem()).train()
    assert type(model.patch_embed).__name__ == 'HybridPatchEmbed'
    out = model(torch.randn(2, 3, 8, 64, 80))
    assert out.grid == (4, 4, 5)
    assert [f.shape for f in out.keyframe_feats] == [(2, 32, 4, 5)] * 4
    assert out.tokens.shape[1] < 4 * 4 * 5
    out.tokens.sum().backward()
    assert model.patch_embed.cnn.conv1.conv.weight.grad.abs().sum() > 0


def test_hybrid_patch_embedding_with_the_wrong_stride():
    model = build(patch_embed_cfg=resnet_stem(num_stages=2))
    with pytest.raises(ValueError, match='its stride must be'):
        model(torch.randn(1, 3, 8, 64, 64))
