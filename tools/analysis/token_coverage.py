"""How many of the tokens EVAD keeps lie on the actors, over a data split.

Usage::

    python tools/analysis/token_coverage.py CONFIG CHECKPOINT \\
        [--split val|test] [--max-clips N] [--keep-rate RHO ...] \\
        [--seed 0] [--json] [--cfg-options KEY=VALUE ...]

Every clip of the split's dataloader (the config's own dataset and
pipeline) goes through one ``model.test_step`` inside
``EVADViT.record_kept_tokens``. A token is *on an actor* when the centre of
its patch lies inside a ground-truth box of the clip's keyframe; the same
keyframe boxes are used for every temporal slice (an actor moves a little
within a clip, so this undercounts the on-actor tokens of the far slices
alike for every strategy). Summed over the clips, for every pruning layer:

* ``kept``: non-keyframe tokens kept, per clip;
* ``on actors, kept``: the share of the kept non-keyframe tokens that lie on
  an actor;
* ``on actors, all``: the share of all non-keyframe positions that lie on an
  actor, which is what a uniformly random choice keeps on average;
* ``actor tokens kept``: the share of the on-actor non-keyframe positions
  that are kept;
* ``keyframe kept``: the share of the keyframe tokens kept (below 1 only
  for ``pruning='unified'``).

``pruning='random'`` draws from torch's global generator, seeded with
``--seed`` before the first clip.
"""
import argparse
import json
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, REPO)

COUNTS = ('clips', 'kept_other', 'kept_other_on_actor', 'all_other',
          'all_other_on_actor', 'kept_keyframe', 'all_keyframe')


def on_actor_positions(boxes: np.ndarray, hw: Sequence[int],
                       patch_size: int) -> np.ndarray:
    """(h*w, ) bool: the patches whose centre lies inside one of ``boxes``.

    Args:
        boxes (np.ndarray): (n, 4) xyxy boxes in input pixels.
        hw (Sequence[int]): (h, w) patch grid.
        patch_size (int): Pixels per patch side.
    """
    h, w = hw
    ys = (np.arange(h) + 0.5) * patch_size
    xs = (np.arange(w) + 0.5) * patch_size
    inside = np.zeros((h, w), bool)
    for x1, y1, x2, y2 in np.asarray(boxes, np.float64).reshape(-1, 4):
        rows = (ys >= y1) & (ys <= y2)
        cols = (xs >= x1) & (xs <= x2)
        inside |= rows[:, None] & cols[None, :]
    return inside.reshape(-1)


def count_clip(kept: Sequence[np.ndarray], on_actor: np.ndarray,
               grid: Sequence[int]) -> List[Dict[str, int]]:
    """The counts of one clip, one dict per pruning layer.

    Args:
        kept (Sequence[np.ndarray]): Per pruning layer, the (M_l, ) grid
            positions (``t*h*w`` raster order) kept after it.
        on_actor (np.ndarray): (h*w, ) bool, from :func:`on_actor_positions`.
        grid (Sequence[int]): (t, h, w); the keyframe is slice ``t // 2``.
    """
    t, h, w = grid
    keyframe = np.zeros((t, h * w), bool)
    keyframe[t // 2] = True
    keyframe = keyframe.reshape(-1)
    actor = np.tile(on_actor, t)
    other = ~keyframe
    counts = []
    for index in kept:
        mask = np.zeros(t * h * w, bool)
        mask[np.asarray(index, np.int64)] = True
        counts.append(dict(
            clips=1,
            kept_other=int((mask & other).sum()),
            kept_other_on_actor=int((mask & other & actor).sum()),
            all_other=int(other.sum()),
            all_other_on_actor=int((other & actor).sum()),
            kept_keyframe=int((mask & keyframe).sum()),
            all_keyframe=int(keyframe.sum())))
    return counts


def summarize(totals: Sequence[Dict[str, int]],
              prune_layers: Sequence[int]) -> List[Dict[str, float]]:
    """Per pruning layer, the shares described in the module docstring."""

    def share(a: int, b: int) -> float:
        return a / b if b else float('nan')

    rows = []
    for layer, c in zip(prune_layers, totals):
        rows.append({
            'block': int(layer),
            'clips': c['clips'],
            'kept': share(c['kept_other'], c['clips']),
            'on actors, kept': share(c['kept_other_on_actor'],
                                     c['kept_other']),
            'on actors, all': share(c['all_other_on_actor'], c['all_other']),
            'actor tokens kept': share(c['kept_other_on_actor'],
                                       c['all_other_on_actor']),
            'keyframe kept': share(c['kept_keyframe'], c['all_keyframe']),
        })
    return rows


def measure(model, dataloader, max_clips: Optional[int] = None):
    """Run ``model.test_step`` over ``dataloader`` and sum the counts.

    Returns:
        tuple: The (t, h, w) token grid of the clips, and the
        :func:`summarize` rows, one per pruning layer.
    """
    import torch
    backbone = model.backbone
    if not getattr(backbone, 'prune_layers', None):
        raise ValueError(
            f'the backbone {type(backbone).__name__} has no pruning layers: '
            'token_coverage needs an EVADViT with prune_layers')
    grids = []
    hook = backbone.register_forward_hook(
        lambda module, args, output: grids.append(tuple(output.grid)))
    totals = [dict.fromkeys(COUNTS, 0) for _ in backbone.prune_layers]
    done = 0
    try:
        for batch in dataloader:
            grids.clear()
            with torch.no_grad(), backbone.record_kept_tokens() as records:
                model.test_step(batch)
            grid = grids[0]
            for b, sample in enumerate(batch['data_samples']):
                if max_clips is not None and done >= max_clips:
                    break
                boxes = sample.gt_instances.bboxes.cpu().numpy()
                on_actor = on_actor_positions(boxes, grid[1:],
                                              int(backbone.patch_size))
                kept = [k[b].cpu().numpy() for k in records[0]]
                for total, counts in zip(totals,
                                         count_clip(kept, on_actor, grid)):
                    for key, value in counts.items():
                        total[key] += value
                done += 1
            if max_clips is not None and done >= max_clips:
                break
    finally:
        hook.remove()
    if not done:
        raise ValueError('the dataloader gave no clips')
    return grid, summarize(totals, backbone.prune_layers)


def format_table(rows: Sequence[Dict[str, float]]) -> List[str]:
    """Markdown lines of :func:`summarize` rows."""
    keys = ('kept', 'on actors, kept', 'on actors, all', 'actor tokens kept',
            'keyframe kept')
    lines = ['| block | ' + ' | '.join(keys) + ' |',
             '|---' * (len(keys) + 1) + '|']
    for row in rows:
        cells = [f'{row["kept"]:.1f}'] + [f'{row[k]:.3f}' for k in keys[1:]]
        lines.append(f'| {row["block"]} | ' + ' | '.join(cells) + ' |')
    return lines


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Share of the tokens EVAD keeps that lie on the '
        'ground-truth actors, per pruning layer, over a data split')
    parser.add_argument('config', help='EVAD config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--split', choices=('val', 'test'), default='val',
                        help='the config\'s <split>_dataloader')
    parser.add_argument('--max-clips', type=int, default=None,
                        help='stop after this many clips')
    parser.add_argument(
        '--keep-rate', type=float, nargs='+', default=None,
        help='backbone keep rate(s) instead of the config\'s (no '
        'retraining)')
    parser.add_argument('--seed', type=int, default=0,
                        help='torch seed (pruning=random draws from it)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--json', action='store_true',
                        help='print one JSON line last')
    parser.add_argument(
        '--cfg-options', nargs='+', default=None, metavar='KEY=VALUE',
        help='config overrides, e.g. model.backbone.pruning=random')
    args = parser.parse_args(argv)
    if args.max_clips is not None and args.max_clips < 1:
        parser.error('--max-clips must be >= 1')
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    from evad_mm.apis.cli import (cfg_options_dict, check_model,
                                  print_error)
    problem = check_model(args.config, args.checkpoint)
    if problem:
        return print_error(problem)
    if not osp.isfile(args.checkpoint):
        return print_error(f'checkpoint not found: {args.checkpoint}')

    import torch
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner

    from evad_mm.apis import init_detector
    try:
        model = init_detector(args.config, args.checkpoint, args.device,
                              cfg_options=cfg_options_dict(args.cfg_options))
        if args.keep_rate is not None:
            model.set_keep_rate(args.keep_rate)
    except ValueError as err:
        return print_error(str(err))
    loader_cfg = dict(model.cfg[f'{args.split}_dataloader'])
    loader_cfg.update(num_workers=0, persistent_workers=False)
    torch.manual_seed(args.seed)
    try:
        with DefaultScope.overwrite_default_scope(
                model.cfg.get('default_scope', 'mmaction')):
            dataloader = Runner.build_dataloader(loader_cfg)
            grid, rows = measure(model, dataloader, args.max_clips)
    except ValueError as err:
        return print_error(str(err))
    t, h, w = grid
    print(f'{args.checkpoint}: {rows[0]["clips"]} {args.split} clips of '
          f'{t}x{h}x{w} tokens, keep rate {list(model.backbone.keep_rate)}, '
          f'pruning {model.backbone.pruning!r}')
    print('\n'.join(format_table(rows)))
    if args.json:
        print(json.dumps(dict(grid=list(grid), rows=rows)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
