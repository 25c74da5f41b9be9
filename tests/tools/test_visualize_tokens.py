"""tools/analysis/visualize_tokens.py: the Fig. 4 grid of kept tokens and
the Fig. 12 decoder attention, from a tiny EVAD checkpoint on a generated
clip (and the shared demo video when present)."""
import dataclasses
import math
import os.path as osp

import cv2
import numpy as np
import pytest
import torch

from tests.conftest import (REPO, TINY_TOY_MODEL, load_tool,
                            moving_square_clip, random_checkpoint,
                            write_mp4)

vis = load_tool('analysis', 'visualize_tokens')

# the toy config, smaller (64 px short side: 4 x 4 x 6 tokens)
TINY = '''
_base_ = [{base!r}]
''' + TINY_TOY_MODEL + '''
val_dataloader = dict(dataset=dict(pipeline=pipeline))
test_dataloader = val_dataloader
'''


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp('vis_tokens')
    config = root / 'tiny.py'
    config.write_text(
        TINY.format(base=osp.join(REPO, 'configs', 'evad_toy_ava.py')))
    checkpoint = random_checkpoint(config, root / 'tiny.pth')
    clip = moving_square_clip(30, (64, 96), slice(16, 48), 4, 24, 2)
    video = write_mp4(root / 'clip.mp4', clip, 10)
    return str(config), checkpoint, video


@pytest.fixture(scope='module')
def inferencer(files):
    from evad_mm.apis import EVADInferencer
    config, checkpoint, _ = files
    return EVADInferencer(config, checkpoint, actor_thr=0.)


@pytest.fixture(scope='module')
def inspection(files, inferencer):
    from evad_mm.apis import load_video
    return vis.inspect_keyframe(inferencer, load_video(files[2]), 15,
                                max_actors=2)


def cell_size(width, t, frame_hw):
    cell_w = (width - vis.GAP * (t - 1)) // t
    return round(frame_hw[0] * cell_w / frame_hw[1]), cell_w


def test_pictures_and_their_sizes(files, tmp_path, capsys):
    config, checkpoint, video = files
    out = tmp_path / 'out'
    assert vis.main([config, checkpoint, video, '--out', str(out),
                     '--keyframe', '1.5', '--width', '300', '--max-actors',
                     '2', '--actor-thr', '0']) == 0
    printed = capsys.readouterr().out
    assert 'keyframe 15 (1.50 s)' in printed
    assert '4x4x6 = 96 tokens, kept after block 1: 68, block 2: 48' in printed
    t, rows = 4, 2
    ch, cw = cell_size(300, t, (64, 96))
    width = t * cw + vis.GAP * (t - 1)
    grid = cv2.imread(str(out / 'kept_tokens.png'))
    assert grid.shape == (rows * ch + vis.GAP * (rows - 1), width, 3)
    for a in range(2):
        strip = cv2.imread(str(out / f'actor_{a}_attention.png'))
        assert strip.shape == (vis.HEADER + ch, width, 3)
    assert not (out / 'actor_2_attention.png').exists()


def test_palette_pictures(files, tmp_path, capsys):
    from PIL import Image
    config, checkpoint, video = files
    pictures = {}
    for colors in (None, 16):
        out = tmp_path / f'colors{colors}'
        extra = [] if colors is None else ['--colors', str(colors)]
        assert vis.main([config, checkpoint, video, '--out', str(out),
                         '--keyframe', '1.5', '--max-actors', '1',
                         '--actor-thr', '0', *extra]) == 0
        pictures[colors] = Image.open(out / 'kept_tokens.png')
    full, palette = pictures[None], pictures[16]
    assert (full.mode, palette.mode) == ('RGB', 'P')
    assert palette.size == full.size
    assert len(palette.getcolors()) <= 16
    # the same picture, up to the palette's rounding
    diff = np.abs(np.asarray(palette.convert('RGB'), np.int16) -
                  np.asarray(full, np.int16))
    assert diff.mean() < 12
    with pytest.raises(SystemExit):
        vis.main([config, checkpoint, video, '--out', str(tmp_path),
                  '--colors', '1'])
    capsys.readouterr()


def test_drawn_mask_is_the_backbones_token_index(files, inferencer,
                                                 inspection):
    from evad_mm.apis import load_video
    info = inspection
    t, h, w = info.grid
    assert (t, h, w) == (4, 4, 6) and info.prune_layers == (1, 2)
    # the backbone alone, on the same clip as the tool
    model = inferencer.model
    data = next(inferencer.preprocess(load_video(files[2]), 1,
                                      keyframes=[15]))
    inputs = model.data_preprocessor(data)['inputs']
    with torch.no_grad(), model.backbone.record_kept_tokens() as kept:
        out = model.backbone(model._pad(inputs))
    kept = kept[0]
    for mask, index in zip(info.kept, kept):
        assert np.array_equal(mask, vis.positions_mask(index[0], t * h * w))
    np.testing.assert_array_equal(info.token_index, out.token_index[0])
    assert [int(m.sum()) for m in info.kept] == [
        math.ceil(0.7 * 96), math.ceil(0.7 * math.ceil(0.7 * 96))]
    # what is drawn: on white frames at full size, kept patches stay white
    white = dataclasses.replace(
        info, frames=np.full_like(info.frames, 255))
    H, W = info.frames.shape[1:3]
    width = t * W + vis.GAP * (t - 1)
    picture = vis.draw_kept_tokens(white, width)
    ps = info.patch_size
    for row, mask in enumerate(info.kept):
        drawn = np.zeros((t, h, w), bool)
        for s in range(t):
            for i in range(h):
                for j in range(w):
                    y = row * (H + vis.GAP) + i * ps + ps // 2
                    x = s * (W + vis.GAP) + j * ps + ps // 2
                    if y < (row + 1) * H + row * vis.GAP and \
                            x < s * (W + vis.GAP) + W:
                        drawn[s, i, j] = picture[y, x].min() == 255
        # patches outside the 64 x 96 frame (padding) are not drawn
        visible = np.zeros((t, h, w), bool)
        visible[:, :H // ps, :W // ps] = True
        # the cell text covers the top-left patch of the first column
        visible[0, 0, :2] = False
        assert np.array_equal(drawn[visible],
                              mask.reshape(t, h, w)[visible])


def test_attention_is_the_last_decoder_blocks(inferencer, inspection):
    info = inspection
    M = len(info.token_index)
    assert info.attention.shape == (2, M)
    assert (info.attention >= 0).all() and \
        (info.attention.sum(1) <= 1 + 1e-5).all()
    assert len(info.titles) == 2 and info.titles[0].startswith('actor 0: ')
    assert info.actor_scores[0] >= info.actor_scores[1]
    # decoder_attention against softmax(q k^T) of the block, computed here
    block = inferencer.model.action_head.blocks[-1]
    torch.manual_seed(1)
    seq = torch.randn(1, 10, block.attn.qkv.in_features)
    key_mask = torch.ones(1, 10, dtype=torch.bool)
    key_mask[0, 7] = False
    rows = vis.decoder_attention(block, seq, key_mask, [8, 3])
    with torch.no_grad():
        q, k, _ = block.attn._qkv(block.norm1(seq))
        logits = (q * block.attn.scale) @ k.transpose(-2, -1)
        logits[..., 7] = float('-inf')
        full = logits.softmax(-1).mean(1)[0]  # (L, L), mean over heads
    torch.testing.assert_close(rows, full[[8, 3]], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(rows.sum(1), torch.ones(2))


def test_attention_strip_marks_pruned_patches_and_the_box(inspection):
    info = inspection
    t, h, w = info.grid
    H, W = info.frames.shape[1:3]
    white = dataclasses.replace(info, frames=np.full_like(info.frames, 255))
    strip = vis.draw_actor_attention(white, 0, t * W + vis.GAP * (t - 1))
    assert strip.shape == (vis.HEADER + H, t * W + vis.GAP * (t - 1), 3)
    ps = info.patch_size
    kept = info.kept[-1].reshape(t, h, w)
    body = strip[vis.HEADER:]
    dim = int(255 * vis.DIM)
    for s in (0, 3):  # not the keyframe (its box and frame are drawn on)
        for i in range(1, H // ps):
            for j in range(W // ps):
                pixel = body[i * ps + ps // 2, s * (W + vis.GAP) + j * ps + 3]
                assert (tuple(pixel) == (dim, ) * 3) == (not kept[s, i, j])


def test_the_demo_video(shared_dir, files, tmp_path):
    demo = osp.join(shared_dir, 'data', 'mmaction2', 'demo', 'demo.mp4')
    if not osp.exists(demo):
        pytest.skip(f'{demo} is not present')
    config, checkpoint, _ = files
    out = tmp_path / 'demo'
    assert vis.main([config, checkpoint, demo, '--out', str(out),
                     '--max-actors', '1', '--actor-thr', '0']) == 0
    grid = cv2.imread(str(out / 'kept_tokens.png'))
    assert grid.shape[1] == 640 - (640 - 3 * vis.GAP) % 4
    assert (out / 'actor_0_attention.png').exists()


def test_errors(files, tmp_path, capsys):
    config, checkpoint, video = files
    assert vis.main([config, checkpoint, str(tmp_path / 'none.mp4'),
                     '--out', str(tmp_path)]) == 1
    assert 'video file not found' in capsys.readouterr().err
    assert vis.main([config, checkpoint, video, '--out', str(tmp_path),
                     '--keyframe', '9']) == 1
    assert 'outside' in capsys.readouterr().err
    assert vis.main([config, str(tmp_path / 'no.pth'), video, '--out',
                     str(tmp_path)]) == 1
    assert 'no.pth' in capsys.readouterr().err


def test_attention_rows_are_those_of_the_drawn_actors(files, inferencer,
                                                      inspection):
    """Query M + a of the last decoder block is actor a of the prediction
    (its classifier gives the predicted scores), and the rows drawn are
    those of the actors with the highest person scores."""
    from evad_mm.apis import load_video
    model = inferencer.model
    head = model.action_head
    block = head.blocks[-1]
    captured = {}
    hooks = [
        block.register_forward_pre_hook(
            lambda m, args: captured.update(seq=args[0], mask=args[1])),
        block.register_forward_hook(
            lambda m, args, out: captured.update(out=out))
    ]
    data = next(inferencer.preprocess(load_video(files[2]), 1,
                                      keyframes=[15]))
    try:
        pred = inferencer.forward(data)[0].pred_instances
    finally:
        for hook in hooks:
            hook.remove()
    M = len(inspection.token_index)
    n = len(pred.bboxes)
    with torch.no_grad():
        probs = head.classifiers[-1](captured['out'][0, M:M + n]).sigmoid()
    torch.testing.assert_close(probs, pred.scores[:, 1:])
    chosen = pred.actor_scores.argsort(descending=True, stable=True)[:2]
    with torch.no_grad():
        q, k, _ = block.attn._qkv(block.norm1(captured['seq']))
        logits = (q * block.attn.scale) @ k.transpose(-2, -1)
        if captured['mask'] is not None:
            logits = logits.masked_fill(~captured['mask'][:, None, None],
                                        float('-inf'))
        full = logits.softmax(-1).mean(1)[0]
    np.testing.assert_allclose(inspection.attention,
                               full[M + chosen, :M].numpy(), atol=1e-5)
    np.testing.assert_allclose(
        inspection.boxes,
        pred.bboxes[chosen].numpy() * np.array([96, 64, 96, 64]), rtol=1e-5)
