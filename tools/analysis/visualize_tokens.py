"""Which tokens EVAD keeps, and where its action decoder looks (the paper's
Figs. 4, 11 and 12), for one keyframe of a video.

Usage::

    python tools/analysis/visualize_tokens.py CONFIG CHECKPOINT VIDEO \\
        --out DIR [--keyframe SECONDS] [--keep-rate RHO] [--max-actors N] \\
        [--width PIXELS] [--colors N] [--device cpu] [--short-side N] \\
        [--cfg-options KEY=VALUE ...]

The clip is taken around the keyframe and goes through the config's test
pipeline exactly as in ``tools/demo.py`` (:class:`EVADInferencer`), then one
``model.test_step`` runs. It writes:

* ``DIR/kept_tokens.png`` (Figs. 4 and 11): one row per pruning layer of the
  backbone, one column per temporal slice of the clip; each cell is the
  slice's middle frame as the model sees it (after the test ``Resize``),
  with the patches that layer (or an earlier one) pruned dimmed. The
  keyframe slice is framed in green. The kept patches of a row are those of
  ``EVADViT.record_kept_tokens`` for that layer, the last row the
  backbone's output ``token_index``.
* ``DIR/actor_<i>_attention.png`` (Fig. 12), for each of the ``--max-actors``
  detected actors with the highest person scores (at least ``--actor-thr``,
  by default the config's ``roi_head.test_cfg.score_thr``): the attention of
  the actor's query in the last decoder block over the kept tokens (mean
  over heads), as a heat map on each slice (pruned patches dimmed, red = the
  most attended token of the clip), and the actor's box on the keyframe.

The attention is the decoder block's own ``Attention`` (its ``forward`` with
one-hot query weights returns that query's row of the head-averaged
attention map divided by the sequence length), on the block input captured
by a forward pre-hook: nothing of the attention is re-implemented here.
"""
import argparse
import os
import os.path as osp
import sys
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, REPO)

from evad_mm.apis.cli import (add_inference_args,  # noqa: E402
                              build_inferencer, check_inputs, print_error,
                              require_positive)

# RGB; pruned patches keep this fraction of their brightness
KEYFRAME_COLOR = (0, 200, 0)
BOX_COLOR = (255, 255, 255)
DIM = 0.25
HEAT_ALPHA = 0.6
GAP = 2  # pixels between cells
HEADER = 14  # pixels of the title bar of an attention strip


@dataclass
class TokenInspection:
    """What one forward pass of EVAD kept and attended to.

    Attributes:
        frames (np.ndarray): (T, H, W, 3) uint8 RGB clip as the model sees
            it (after the test ``Resize``, before padding).
        grid (tuple[int]): (t, h, w) token grid.
        patch_size (int): Pixels per token side.
        tubelet_size (int): Frames per temporal slice.
        prune_layers (tuple[int]): The backbone's pruning blocks.
        kept (list[np.ndarray]): Per pruning layer, the (t*h*w, ) bool mask
            of the grid positions kept after it.
        token_index (np.ndarray): (M, ) grid positions of the tokens given
            to the action head, in their order.
        boxes (np.ndarray): (n, 4) actors' xyxy boxes in ``frames`` pixels.
        actor_scores (np.ndarray): (n, ) person scores.
        attention (np.ndarray): (n, M) each actor's attention over the kept
            tokens in the last decoder block (mean over heads; a row of the
            full map, which also covers the actor tokens, so it sums to at
            most 1).
        titles (list[str]): Per actor, its person score and best action.
    """
    frames: np.ndarray
    grid: Tuple[int, int, int]
    patch_size: int
    tubelet_size: int
    prune_layers: Tuple[int, ...]
    kept: List[np.ndarray]
    token_index: np.ndarray
    boxes: np.ndarray
    actor_scores: np.ndarray
    attention: np.ndarray
    titles: List[str]

    def slice_frame(self, s: int) -> np.ndarray:
        """The middle frame of temporal slice ``s`` (the keyframe itself for
        the keyframe slice), (H, W, 3)."""
        return self.frames[s * self.tubelet_size +
                           (self.tubelet_size - 1) // 2]


def positions_mask(token_index, num_positions: int) -> np.ndarray:
    """(num_positions, ) bool: True at the grid positions in
    ``token_index`` (M, )."""
    mask = np.zeros(num_positions, bool)
    mask[np.asarray(token_index, np.int64)] = True
    return mask


def decoder_attention(block, seq, key_mask, queries: Sequence[int]):
    """Rows of the head-averaged attention map of a decoder block.

    ``Attention.forward`` with ``query_weights`` returns the importance
    ``I_j = 1/L * sum_i w_i * mean_h A[h, i, j]``; with a one-hot weight on
    query ``q`` that is ``mean_h A[h, q, j] / L``.

    Args:
        block (TransformerBlock): The block; its input was ``seq``.
        seq (Tensor): (1, L, C) block input.
        key_mask (Tensor, optional): (1, L) bool keys attended to.
        queries (Sequence[int]): Query positions in ``seq``.

    Returns:
        Tensor: (len(queries), L) float32.
    """
    import torch
    length = seq.shape[1]
    rows = []
    with torch.no_grad():
        normed = block.norm1(seq)
        for q in queries:
            weights = torch.zeros(length, device=seq.device)
            weights[q] = 1.
            _, scores = block.attn(normed, key_mask, query_weights=weights)
            rows.append(scores[0].float() * length)
    if not rows:
        return torch.zeros(0, length)
    return torch.stack(rows)


def _pruning_parts(model):
    """The backbone (with ``record_kept_tokens``) and the decoder's last
    block, or a ValueError saying what is missing."""
    backbone = getattr(model, 'backbone', None)
    if not hasattr(backbone, 'record_kept_tokens'):
        raise ValueError(
            f'the backbone {type(backbone).__name__} prunes no tokens: '
            'visualize_tokens needs an EVADViT backbone (a config and '
            'checkpoint, not an exported model)')
    if not backbone.prune_layers:
        raise ValueError('the backbone has no pruning layers '
                         '(prune_layers is empty): no kept tokens to draw')
    blocks = getattr(getattr(model, 'action_head', None), 'blocks', None)
    if not blocks:
        raise ValueError(
            'the model has no action_head with decoder blocks '
            '(ContextRefinementHead) whose attention could be drawn')
    return backbone, blocks[-1]


def inspect_keyframe(inferencer, video, keyframe: int,
                     max_actors: int = 3,
                     actor_thr: float = 0.) -> TokenInspection:
    """Run EVAD on the clip of one keyframe and record its kept tokens and
    the decoder attention of its actors.

    Args:
        inferencer (EVADInferencer): Of a config and checkpoint.
        video (VideoFrames): From :func:`evad_mm.apis.load_video`.
        keyframe (int): 0-based frame index.
        max_actors (int): At most this many actors, highest person score
            first.
        actor_thr (float): Only actors whose person score reaches this.

    Returns:
        TokenInspection
    """
    from evad_mm.apis import KeyframeResult
    model = inferencer.model
    backbone, last_block = _pruning_parts(model)
    data = next(inferencer.preprocess(video, 1, keyframes=[keyframe]))
    captured = {}

    def grab_output(module, args, output):
        captured['grid'] = tuple(output.grid)
        captured['token_index'] = output.token_index

    def grab_input(module, args):
        captured['seq'] = args[0]
        captured['key_mask'] = args[1] if len(args) > 1 else None

    hooks = [backbone.register_forward_hook(grab_output),
             last_block.register_forward_pre_hook(grab_input)]
    try:
        with backbone.record_kept_tokens() as records:
            pred = inferencer.forward(data)[0]
    finally:
        for hook in hooks:
            hook.remove()
    t, h, w = captured['grid']
    token_index = captured['token_index'][0].cpu().numpy()
    frames = data['inputs'][0].permute(1, 2, 3, 0).cpu().numpy()
    actors = pred.pred_instances
    scores = actors.actor_scores.float().cpu().numpy()
    order = np.argsort(-scores, kind='stable')
    chosen = order[scores[order] >= actor_thr][:max_actors]
    num_tokens = len(token_index)
    attention = decoder_attention(last_block, captured['seq'],
                                  captured['key_mask'],
                                  [num_tokens + int(a) for a in chosen])
    height, width = frames.shape[1:3]
    boxes = actors.bboxes.float().cpu().numpy()[chosen] * np.array(
        [width, height, width, height], np.float32)
    result = KeyframeResult.from_data_sample(pred, inferencer.label_names,
                                             inferencer.num_classes)
    titles = []
    for a in chosen:
        title = f'actor {len(titles)}: person {scores[a]:.2f}'
        if result.scores.shape[1]:
            best = int(result.scores[a].argmax())
            name = inferencer.label_names.get(best + 1, f'class_{best + 1}')
            title += f' {name} {result.scores[a, best]:.2f}'
        titles.append(title)
    return TokenInspection(
        frames=frames,
        grid=(t, h, w),
        patch_size=int(backbone.patch_size),
        tubelet_size=int(backbone.tubelet_size),
        prune_layers=tuple(backbone.prune_layers),
        kept=[positions_mask(k[0].cpu().numpy(), t * h * w)
              for k in records[0]],
        token_index=token_index,
        boxes=boxes,
        actor_scores=scores[chosen],
        attention=attention[:, :num_tokens].cpu().numpy(),
        titles=titles)


# ------------------------------------------------------------------ drawing


def _patch_map(values: np.ndarray, grid_hw: Tuple[int, int],
               patch_size: int, frame_hw: Tuple[int, int]) -> np.ndarray:
    """(h*w, ...) per-token values -> (H, W, ...) per pixel (the grid
    covers the zero-padded frame; the padding is cut off)."""
    h, w = grid_hw
    grid = values.reshape(h, w, *values.shape[1:])
    pixels = grid.repeat(patch_size, 0).repeat(patch_size, 1)
    return pixels[:frame_hw[0], :frame_hw[1]]


def _cell_size(info: TokenInspection, width: int) -> Tuple[int, int]:
    """(height, width) of one cell so that a row of t cells is ``width``
    pixels wide."""
    t = info.grid[0]
    cell_w = max(8, (width - GAP * (t - 1)) // t)
    H, W = info.frames.shape[1:3]
    return max(8, round(H * cell_w / W)), cell_w


def _put_text(image: np.ndarray, text: str) -> None:
    import cv2
    scale = 0.35
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(image, (0, 0), (tw + 4, th + base + 3), (0, 0, 0), -1)
    cv2.putText(image, text, (2, th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), 1, cv2.LINE_AA)


def _with_header(image: np.ndarray, text: str) -> np.ndarray:
    """``image`` below a black bar of ``HEADER`` pixels holding ``text``."""
    bar = np.zeros((HEADER, image.shape[1], 3), np.uint8)
    _put_text(bar, text)
    return np.concatenate([bar, image])


def _layout(rows: List[List[np.ndarray]]) -> np.ndarray:
    """Cells of equal size on a black canvas, ``GAP`` pixels apart."""
    ch, cw = rows[0][0].shape[:2]
    n_rows, n_cols = len(rows), len(rows[0])
    canvas = np.zeros((n_rows * ch + GAP * (n_rows - 1),
                       n_cols * cw + GAP * (n_cols - 1), 3), np.uint8)
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            y, x = r * (ch + GAP), c * (cw + GAP)
            canvas[y:y + ch, x:x + cw] = cell
    return canvas


def _finish_cell(image: np.ndarray, size: Tuple[int, int],
                 keyframe: bool, text: str = '') -> np.ndarray:
    import cv2
    cell = cv2.resize(image, (size[1], size[0]),
                      interpolation=cv2.INTER_AREA)
    if keyframe:
        cv2.rectangle(cell, (0, 0), (size[1] - 1, size[0] - 1),
                      KEYFRAME_COLOR, 2)
    if text:
        _put_text(cell, text)
    return cell


def draw_kept_tokens(info: TokenInspection, width: int = 640) -> np.ndarray:
    """The Fig. 4 grid: rows = pruning layers, columns = temporal slices.

    Returns:
        np.ndarray: (rows * ch + gaps, t * cw + gaps, 3) uint8 RGB.
    """
    t, h, w = info.grid
    size = _cell_size(info, width)
    frame_hw = info.frames.shape[1:3]
    rows = []
    for layer, kept in zip(info.prune_layers, info.kept):
        kept = kept.reshape(t, h * w)
        row = []
        for s in range(t):
            frame = info.slice_frame(s).astype(np.float32)
            keep = _patch_map(kept[s], (h, w), info.patch_size, frame_hw)
            image = np.where(keep[..., None], frame, frame * DIM)
            text = f'block {layer}: {int(kept.sum())}/{kept.size}' \
                if s == 0 else ''
            row.append(_finish_cell(image.astype(np.uint8), size,
                                    s == t // 2, text))
        rows.append(row)
    return _layout(rows)


def draw_actor_attention(info: TokenInspection, actor: int,
                         width: int = 640) -> np.ndarray:
    """The Fig. 12 strip of one actor: per temporal slice, its attention
    over the kept tokens as a heat map (pruned patches dimmed), its box on
    the keyframe.

    Returns:
        np.ndarray: (HEADER + ch, t * cw + gaps, 3) uint8 RGB.
    """
    import cv2
    t, h, w = info.grid
    size = _cell_size(info, width)
    frame_hw = info.frames.shape[1:3]
    attn = np.zeros(t * h * w, np.float32)
    attn[info.token_index] = info.attention[actor]
    attn /= max(float(attn.max()), 1e-12)
    heat = cv2.applyColorMap((attn * 255).astype(np.uint8).reshape(-1, 1),
                             cv2.COLORMAP_JET)[:, 0, ::-1]  # RGB
    kept = positions_mask(info.token_index, t * h * w)
    row = []
    for s in range(t):
        part = slice(s * h * w, (s + 1) * h * w)
        frame = info.slice_frame(s).astype(np.float32)
        keep = _patch_map(kept[part], (h, w), info.patch_size, frame_hw)
        colors = _patch_map(heat[part], (h, w), info.patch_size, frame_hw)
        image = np.where(keep[..., None],
                         (1 - HEAT_ALPHA) * frame + HEAT_ALPHA * colors,
                         frame * DIM).astype(np.uint8)
        if s == t // 2:
            x1, y1, x2, y2 = np.round(info.boxes[actor]).astype(int)
            cv2.rectangle(image, (x1, y1), (x2, y2), BOX_COLOR, 1)
        row.append(_finish_cell(image, size, s == t // 2))
    return _with_header(_layout([row]), info.titles[actor])


def save_rgb(path: str, image: np.ndarray,
             colors: Optional[int] = None) -> None:
    """Write an (H, W, 3) uint8 RGB picture (PNG by the extension); with
    ``colors``, as a palette PNG of at most that many colours (no dither),
    a few times smaller."""
    if colors is not None:
        from PIL import Image
        Image.fromarray(np.ascontiguousarray(image)).quantize(
            colors, dither=Image.Dither.NONE).save(path, optimize=True)
        return
    import mmcv
    if not mmcv.imwrite(np.ascontiguousarray(image[..., ::-1]), path):
        raise OSError(f'could not write {path}')


# --------------------------------------------------------------------- CLI


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Pictures of the tokens EVAD keeps in each pruning layer '
        'and of the decoder attention of its actors, for one keyframe')
    parser.add_argument('config', help='EVAD config file')
    parser.add_argument('checkpoint', help='checkpoint file or URL')
    parser.add_argument('video', help='input video file')
    parser.add_argument('--out', required=True, help='output directory')
    parser.add_argument(
        '--keyframe', type=float, default=None, metavar='SECONDS',
        help='time of the keyframe (default: the middle of the video)')
    parser.add_argument(
        '--keep-rate', type=float, nargs='+', default=None,
        help='backbone keep rate(s) instead of the config\'s: one, or one '
        'per pruning layer (no retraining, as in the paper\'s Fig. 5)')
    parser.add_argument('--max-actors', type=int, default=3,
                        help='attention pictures of this many actors, '
                        'highest person score first')
    parser.add_argument('--width', type=int, default=640,
                        help='width of each picture in pixels')
    parser.add_argument(
        '--colors', type=int, default=None, metavar='N',
        help='save palette PNGs of at most N (2-256) colours, a few times '
        'smaller (default: full RGB)')
    add_inference_args(parser)
    args = parser.parse_args(argv)
    require_positive(parser, args, ('max_actors', 'width', 'max_labels'))
    if args.colors is not None and not 2 <= args.colors <= 256:
        parser.error('--colors must lie in 2..256')
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    problem = check_inputs(args.video, args.config, args.checkpoint)
    if problem:
        return print_error(problem)

    from evad_mm.apis import VideoReadError, load_video
    from evad_mm.apis.pipeline import training_fps
    try:
        video = load_video(args.video)
        inferencer = build_inferencer(args)
        if args.keep_rate is not None:
            inferencer.set_keep_rate(args.keep_rate)
    except (FileNotFoundError, VideoReadError, ValueError) as err:
        return print_error(str(err))
    fps = video.fps or training_fps(inferencer.cfg)
    if args.keyframe is None:
        keyframe = len(video) // 2
    else:
        keyframe = int(round(args.keyframe * fps))
        if not 0 <= keyframe < len(video):
            return print_error(
                f'--keyframe {args.keyframe} s is frame {keyframe}, outside '
                f'{args.video} ({len(video)} frames at {fps:.3g} fps)')
    try:
        info = inspect_keyframe(inferencer, video, keyframe, args.max_actors,
                                inferencer.actor_thr)
    except (VideoReadError, ValueError) as err:
        return print_error(str(err))

    os.makedirs(args.out, exist_ok=True)
    pictures = {'kept_tokens.png': draw_kept_tokens(info, args.width)}
    for a in range(len(info.boxes)):
        pictures[f'actor_{a}_attention.png'] = draw_actor_attention(
            info, a, args.width)
    written = [osp.join(args.out, name) for name in pictures]
    for path, image in zip(written, pictures.values()):
        save_rgb(path, image, args.colors)
    t, h, w = info.grid
    kept = ', '.join(f'block {layer}: {int(k.sum())}'
                     for layer, k in zip(info.prune_layers, info.kept))
    print(f'keyframe {keyframe} ({keyframe / fps:.2f} s) of {args.video}; '
          f'{t}x{h}x{w} = {t * h * w} tokens, kept after {kept}; '
          f'{len(info.boxes)} actors drawn (person score >= '
          f'{inferencer.actor_thr:g})')
    for path in written:
        print(f'wrote {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
