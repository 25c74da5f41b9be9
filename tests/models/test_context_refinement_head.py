import pytest
import torch

from evad_mm.models.backbones import EVADBackboneOutput
from evad_mm.registry import MMDET_MODELS, MODELS

HEAD = dict(
    type='ContextRefinementHead',
    num_classes=6,
    in_channels=16,
    embed_dims=32,
    depth=2,
    num_heads=4,
    hidden_channels=24,
    pos_grid=(4, 4, 4))


def build(**kwargs):
    torch.manual_seed(0)
    head = MODELS.build({**HEAD, **kwargs})
    head.init_weights()
    return head


def pruned_output(batch=2, grid=(4, 4, 4), keep=40):
    """Keyframe tokens first, then `keep - h*w` non-keyframe tokens in a
    scrambled order, as top-k returns them."""
    t, h, w = grid
    key = torch.arange(h * w) + (t // 2) * h * w
    others = torch.tensor(
        [p for p in range(t * h * w) if p not in set(key.tolist())])
    index = torch.stack([
        torch.cat([key, others[torch.randperm(len(others))[:keep - h * w]]])
        for _ in range(batch)
    ])
    tokens = torch.randn(batch, keep, 16)
    return EVADBackboneOutput((), tokens, index, grid)


def test_rebuild_places_every_token_at_its_position():
    head = build()
    out = pruned_output()
    x = head.encoder_to_decoder(out.tokens)
    pos = torch.zeros(64, 32)
    fmap = head.rebuild_feature_map(x, out.token_index, out.grid, pos)
    flat = fmap.flatten(2).transpose(1, 2)  # (B, t*h*w, C)
    for b in range(2):
        torch.testing.assert_close(flat[b, out.token_index[b]], x[b])
        pruned = torch.ones(64, dtype=torch.bool)
        pruned[out.token_index[b]] = False
        assert torch.equal(flat[b, pruned],
                           head.mask_token[0].expand(int(pruned.sum()), -1))


def test_reference_order_writes_non_keyframe_tokens_in_ascending_order():
    head = build(token_order='reference')
    out = pruned_output()
    place = head._placement(out.token_index, out.grid)
    assert torch.equal(place[:, :16], out.token_index[:, :16])
    assert torch.equal(place[:, 16:], out.token_index[:, 16:].sort(1).values)
    assert not torch.equal(place, out.token_index)
    # as sets the placements agree: only which token goes where differs
    assert torch.equal(place.sort(1).values, out.token_index.sort(1).values)


def test_keep_all_reference_equals_position_order():
    out = pruned_output(keep=64)
    out = out._replace(token_index=out.token_index.sort(1).values)
    rois = torch.tensor([[0., 0., 0., 40., 40.], [1., 8., 8., 60., 60.]])
    a = build(token_order='position').eval()(out, rois)
    b = build(token_order='reference').eval()(out, rois)
    torch.testing.assert_close(a[-1], b[-1])


def test_forward_shapes_on_pruned_tokens_and_plain_maps():
    head = build().eval()
    rois = torch.tensor([[0., 0., 0., 40., 40.], [0., 4., 4., 20., 30.],
                         [1., 8., 8., 60., 60.]])
    logits = head(pruned_output(), rois, img_shapes=[(64, 64)] * 2)
    assert len(logits) == 2 and all(x.shape == (3, 5) for x in logits)
    # any backbone's (B, C, t, h, w) map, another t than the table's
    plain = torch.randn(2, 16, 2, 5, 6)
    logits = head(plain, rois)
    assert all(x.shape == (3, 5) for x in logits)
    probs = head.predict(plain, rois)
    assert probs.shape == (3, 6) and torch.all(probs[:, 0] == 0)


def test_padding_boxes_do_not_change_results():
    """A sample's predictions do not depend on how many boxes another
    sample in the batch has (padded slots are masked)."""
    head = build().eval()
    out = pruned_output()
    one = torch.tensor([[0., 0., 0., 40., 40.], [1., 8., 8., 60., 60.]])
    more = torch.cat([one, torch.tensor([[1., 0., 0., 30., 30.],
                                         [1., 5., 5., 50., 20.]])])
    a = head(out, one)[-1]
    b = head(out, more)[-1]
    torch.testing.assert_close(a[0], b[0], atol=1e-5, rtol=1e-4)


def test_loss_with_and_without_boxes():
    head = build().train()
    out = pruned_output()
    rois = torch.tensor([[0., 0., 0., 40., 40.]])
    labels = torch.tensor([[0., 1., 0., 0., 1., 0.]])
    losses = head.loss(out, rois, labels)
    assert set(losses) == {'d0.loss_action', 'd1.loss_action'}
    sum(losses.values()).backward()
    assert head.blocks[0].attn.qkv.weight.grad is not None
    empty = head.loss(out, rois[:0], labels[:0])
    total = sum(empty.values())
    assert torch.isfinite(total) and total.item() == 0
    total.backward()
    with pytest.raises(ValueError, match='num_classes'):
        head.loss(out, rois, labels[:, :4])


def test_registered_in_mmdet_too_and_validates():
    assert MMDET_MODELS.get('ContextRefinementHead') is not None
    with pytest.raises(ValueError, match='divisible'):
        MODELS.build({**HEAD, 'num_heads': 5})
    with pytest.raises(ValueError, match='token_order'):
        MODELS.build({**HEAD, 'token_order': 'score'})


@pytest.mark.parametrize('actor_cells,temporal_pool', [(1, 'avg'), (4, None)])
def test_time_ordered_actor_features(actor_cells, temporal_pool):
    """A box feature pooled by the mean over time (and space, which keeps
    it linear) is the same for a clip played backwards; with
    roi_temporal_pool=None and actor_cells=t it is not."""
    head = build(
        actor_cells=actor_cells,
        roi_extractor=dict(
            type='ExtendedRoIExtractor3D', roi_spatial_pool='avg',
            roi_temporal_pool=temporal_pool))
    head.eval()
    features = []
    append = head._append_actors
    head._append_actors = lambda x, f, *rest: append(
        x, features.append(f) or f, *rest)
    rois = torch.tensor([[0., 0., 0., 40., 40.], [1., 8., 8., 60., 60.]])
    clip = torch.randn(2, 16, 4, 5, 6)
    with torch.no_grad():
        head(clip, rois)
        head(clip.flip(2), rois)
    assert features[0].shape == (2, 32)
    assert torch.allclose(features[0], features[1],
                          atol=1e-6) == (actor_cells == 1)


def test_actor_cells_must_match_the_extractor():
    head = build(
        actor_cells=3,
        roi_extractor=dict(
            type='ExtendedRoIExtractor3D', roi_temporal_pool=None))
    with pytest.raises(ValueError, match='actor_cells=3'):
        head(torch.randn(1, 16, 4, 5, 6), torch.tensor([[0., 0, 0, 30, 30]]))
    with pytest.raises(ValueError, match='actor_cells=0'):
        build(actor_cells=0)
