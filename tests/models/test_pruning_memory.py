"""Training memory of the pruning blocks: with gradients, fused attention
gives the output and a separate pass without grad gives the ranking, so
autograd keeps no attention map; gradients and kept tokens equal those of
the eager path."""
import pytest
import torch

from evad_mm.models.layers import Attention
from tests.models.test_evad_vit import build, saved_tensor_sizes


def pruning_attention(fused, batch=2, tokens=64, dims=32, heads=4):
    torch.manual_seed(0)
    attn = Attention(dims, heads, fused_attn=fused)
    x = torch.randn(batch, tokens, dims, requires_grad=True)
    weights = torch.ones(tokens)
    return attn, x, weights


@pytest.mark.parametrize('fused', [True, False])
def test_training_keeps_no_attention_map_with_fused_attention(fused):
    attn, x, weights = pruning_attention(fused)
    sizes, (out, scores) = saved_tensor_sizes(
        lambda: attn(x, query_weights=weights))
    B, N = x.shape[:2]
    attention_map = B * attn.num_heads * N * N
    if fused:
        assert max(sizes) < attention_map
    else:  # the reference path: the map is kept for backward
        assert max(sizes) >= attention_map
    assert scores.shape == (B, N) and not scores.requires_grad
    assert out.requires_grad


@pytest.mark.parametrize('grad', [True, False])
def test_scores_of_the_separate_pass_equal_the_eager_pass(grad):
    attn, x, weights = pruning_attention(True)
    weights[:16] = 3.
    mask = torch.ones(2, 64, dtype=torch.bool)
    mask[1, 50:] = False
    with torch.set_grad_enabled(grad):
        fused_out, fused_scores = attn(x, mask, weights)
        attn.fused_attn = False
        eager_out, eager_scores = attn(x, mask, weights)
    assert torch.equal(fused_scores, eager_scores)
    assert torch.all(eager_scores[1, 50:] == 0)
    torch.testing.assert_close(fused_out, eager_out, atol=1e-5, rtol=1e-4)


def test_pruning_gradients_equal_the_eager_path():
    clip = torch.randn(2, 3, 8, 64, 64)
    runs = []
    for fused in (True, False):
        model = build(drop_path_rate=0.).train()
        model.set_fused_attn(fused)
        out = model(clip)
        loss = out.tokens.square().sum() + sum(
            f.square().sum() for f in out.keyframe_feats)
        loss.backward()
        runs.append((out, {
            n: p.grad.clone()
            for n, p in model.named_parameters()
        }))
    (fused, fused_grads), (eager, eager_grads) = runs
    assert torch.equal(fused.token_index, eager.token_index)
    assert fused.tokens.shape[1] < 4 * 4 * 4
    torch.testing.assert_close(fused.tokens, eager.tokens, atol=1e-5,
                               rtol=1e-4)
    assert fused_grads.keys() == eager_grads.keys()
    for name, grad in fused_grads.items():
        torch.testing.assert_close(
            grad, eager_grads[name], atol=1e-5, rtol=1e-4, msg=name)


def test_inference_keeps_the_single_eager_pass():
    """Without gradients one eager pass gives output and scores (no faster
    with two passes, and the same values as before): the fused call is not
    made."""
    attn, x, weights = pruning_attention(True)
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def counted(*args, **kwargs):
        calls.append(1)
        return sdpa(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.nn.functional, 'scaled_dot_product_attention',
                   counted)
        train_out, train_scores = attn(x, query_weights=weights)
        assert calls == [1]
        with torch.no_grad():
            out, scores = attn(x, query_weights=weights)
        assert calls == [1]
    torch.testing.assert_close(out, train_out.detach(), atol=1e-5, rtol=1e-4)
    assert torch.equal(scores, train_scores)

