"""Write a small synthetic AVA-format data set ("toy AVA") for EVAD tests.

Layout, as mmaction2's ``AVADataset``/``AVAMetric`` read it: ``rawframes/
<video_id>/img_%05d.jpg`` (1-based), ``annotations/{train,val}.csv`` (no
header, one row per (box, action), boxes normalised xyxy with 3 decimals),
``annotations/{train,val}_excluded_timestamps.csv``, ``annotations/
action_list.pbtxt`` and ``meta.json``.  Keyframes where two actors overlap
with IoU > 0.4 are listed as excluded and, as in AVA, get no CSV rows
(mmaction2's ``ava_eval`` would count their boxes as missed otherwise).
Frame n shows time ``900 + (n - 1) / fps`` for the whole range [900, 900 +
seconds]; keyframes are the seconds 901 .. 900+seconds-1.

Videos have a panning cluttered background and drifting distractor blobs.
Actors (head disc, textured body, "arm" bar) keep one entity_id and are
visible from ``VISIBLE_MARGIN`` (0.55 s) before their first to 0.55 s after
their last annotated keyframe: a clip around a keyframe sees most of the
action, and no actor enters or leaves within 0.45 s of a keyframe where it
is not annotated (mmaction2's ``SampleAVAFrames`` centres 8x2 clips one
frame after the keyframe, and training jitters frames by one).  Labels:
one motion class, told apart ONLY by motion -- ``move_left``/``move_right``
(20-32 px/s), ``grow``/``shrink`` (size x1.2-1.3 per s) or ``stand_still``;
``striped`` (diagonal body stripes), told apart ONLY by appearance; ``wave``
(the arm bar oscillates at 0.6-1.2 Hz, static otherwise), motion only.
Keyframes without actors have no CSV rows (``AVADataset`` skips them): each
video with >= 3 keyframes has one forced-empty keyframe, others are random.
"""
import argparse
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

try:
    import cv2
except ImportError:  # pragma: no cover - fallback when OpenCV is missing
    cv2 = None

CLASSES = ('move_left', 'move_right', 'grow', 'shrink', 'stand_still',
           'striped', 'wave')
MOTIONS = CLASSES[:5]
TIMESTAMP_START = 900
IOU_EXCLUDE = 0.4
VISIBLE_MARGIN = 0.55  # s an actor is shown before/after its keyframes
CLUTTER_AREA = 600  # background blobs: one per this many pixels


def smooth_noise(rng: np.random.Generator, h: int, w: int,
                 cells: int) -> np.ndarray:
    """(h, w, 3) bilinearly upsampled uniform noise in [0, 1]."""
    g = rng.random((cells + 1, cells + 1, 3))
    y = np.linspace(0, cells, h, endpoint=False)
    x = np.linspace(0, cells, w, endpoint=False)
    y0, x0 = y.astype(int), x.astype(int)
    fy, fx = (y - y0)[:, None, None], (x - x0)[None, :, None]
    top = g[y0][:, x0] * (1 - fx) + g[y0][:, x0 + 1] * fx
    bot = g[y0 + 1][:, x0] * (1 - fx) + g[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bot * fy


def blend(img: np.ndarray, box: Sequence[float], shape: str,
          color) -> None:
    """Alpha-blend an anti-aliased ellipse/rect filling ``box`` into img.

    ``color`` is an RGB triple or a texture (th, tw, 3) stretched over box.
    """
    x1, y1, x2, y2 = box
    H, W = img.shape[:2]
    c0, c1 = max(int(np.floor(x1)), 0), min(int(np.ceil(x2)), W)
    r0, r1 = max(int(np.floor(y1)), 0), min(int(np.ceil(y2)), H)
    if c0 >= c1 or r0 >= r1 or x2 - x1 < 1 or y2 - y1 < 1:
        return
    xs, ys = np.arange(c0, c1)[None] + 0.5, np.arange(r0, r1)[:, None] + 0.5
    if shape == 'ellipse':
        rx, ry = (x2 - x1) / 2, (y2 - y1) / 2
        d = np.hypot((xs - x1 - rx) / rx, (ys - y1 - ry) / ry)
        alpha = np.clip(0.5 - (d - 1) * min(rx, ry), 0, 1)
    else:
        alpha = np.clip(np.minimum(np.minimum(xs - x1, x2 - xs),
                                   np.minimum(ys - y1, y2 - ys)) + 0.5, 0, 1)
    color = np.asarray(color, np.float32)
    if color.ndim == 3:
        th, tw = color.shape[:2]
        u = np.clip((xs - x1) / (x2 - x1) * tw, 0, tw - 1).astype(int)
        v = np.clip((ys - y1) / (y2 - y1) * th, 0, th - 1).astype(int)
        color = color[v, u]
    a, patch = alpha[..., None], img[r0:r1, c0:c1]
    patch[...] = patch * (1 - a) + color * a


def make_background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Cluttered canvas (h, w, 3) float: colour noise, fine grain, blobs."""
    bg = 40 + 170 * smooth_noise(rng, h, w, 5)
    bg += 50 * (smooth_noise(rng, h, w, max(w // 6, 2)) - 0.5)
    for _ in range(int(w * h / CLUTTER_AREA)):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(2, 7, size=2)
        blend(bg, (cx - rx, cy - ry, cx + rx, cy + ry),
              str(rng.choice(['ellipse', 'rect'])), rng.uniform(0, 255, 3))
    return bg


def actor_box(actor: Dict, t: float) -> np.ndarray:
    """Unclipped pixel box xyxy of ``actor`` at time ``t`` (s from start)."""
    dt = t - actor['t_on']
    w, h = np.array([actor['w0'], actor['h0']]) * actor['growth']**dt / 2
    cx, cy = actor['cx0'] + actor['vx'] * dt, actor['cy0']
    return np.array([cx - w, cy - h, cx + w, cy + h])


def draw_actor(img: np.ndarray, actor: Dict, t: float) -> None:
    """Draw head disc, textured body and arm bar of ``actor`` at time t."""
    x1, y1, x2, y2 = actor_box(actor, t)
    w, h = x2 - x1, y2 - y1
    r, cx, top, o = min(0.12 * h, 0.45 * w), (x1 + x2) / 2, y1 + 0.22 * h, 1.5
    for d, head, body in ((0, (20,) * 3, (20,) * 3),  # dark outline, then fill
                          (o, actor['head'], actor['tex'])):
        blend(img, (cx - r + d, y1 + d, cx + r - d, y1 + 2 * r - d),
              'ellipse', head)
        blend(img, (x1 + d, top + d, x2 - d, y2 - d), actor['shape'], body)
    pos = actor['arm_pos'] if actor['wave_hz'] == 0 else 0.5 + 0.45 * np.sin(
        2 * np.pi * actor['wave_hz'] * t + actor['wave_phase'])
    ay = top + (0.1 + 0.7 * pos) * (y2 - top)
    blend(img, (x1 + 0.12 * w, ay, x2 - 0.12 * w, ay + 0.11 * h), 'rect',
          actor['arm'])


def sample_actor(rng: np.random.Generator, motion: str, k0: int, k1: int,
                 W: int, H: int) -> Dict:
    """Random actor doing ``motion``, annotated on keyframes k0..k1."""
    t_on, t_off = k0 - VISIBLE_MARGIN, k1 + VISIBLE_MARGIN
    dur, aspect, growth, vx = t_off - t_on, rng.uniform(0.4, 0.8), 1.0, 0.0
    h0 = rng.uniform(0.3, 0.55) * H
    if motion in ('grow', 'shrink'):
        growth = rng.uniform(1.2, 1.3)
        h_small = rng.uniform(0.25, max(0.65 / growth**dur, 0.26)) * H
        h0 = h_small if motion == 'grow' else h_small * growth**dur
        growth = growth if motion == 'grow' else 1 / growth
    w0 = h0 * aspect
    h_max, w_max = h0 * max(1, growth**dur), w0 * max(1, growth**dur)
    cy0 = rng.uniform(0.4 * h_max, max(H - 0.4 * h_max, 0.4 * h_max + 1))
    cx0 = rng.uniform(0.3 * w_max, max(W - 0.3 * w_max, 0.3 * w_max + 1))
    if motion in ('move_left', 'move_right'):
        speed = min(rng.uniform(20, 32), (W - 0.4 * w0) / dur)
        # start centre of a rightward path with <= 30% of the body outside
        cx0 = rng.uniform(0.2 * w0, max(W - 0.2 * w0 - speed * dur,
                                        0.2 * w0 + 1))
        vx = speed if motion == 'move_right' else -speed
        cx0 = cx0 if vx > 0 else W - cx0
    tex = 255 * (0.25 + 0.5 * smooth_noise(rng, 32, 32, 3))
    tex = tex * 0.5 + rng.uniform(0, 255, 3) * 0.5
    striped = bool(rng.random() < 0.5)
    if striped:
        ii, jj = np.mgrid[:32, :32]
        on = ((ii + jj) // 4) % 2 == 0
        tex[on] = 0.3 * tex[on] + 0.7 * (255 - tex[on])
    wave = bool(rng.random() < 0.4)
    labels = [motion] + ['striped'] * striped + ['wave'] * wave
    return dict(
        motion=motion, labels=labels, k0=k0, k1=k1, t_on=t_on, t_off=t_off,
        cx0=cx0, cy0=cy0, w0=w0, h0=h0, vx=vx, growth=growth,
        shape=str(rng.choice(['rect', 'ellipse'])), tex=tex,
        head=rng.uniform(60, 255, 3), arm=rng.uniform(0, 255, 3),
        arm_pos=rng.uniform(0, 1), wave_hz=rng.uniform(0.6, 1.2) * wave,
        wave_phase=rng.uniform(0, 2 * np.pi))


def schedule_actors(rng: np.random.Generator, seconds: int, W: int,
                    H: int) -> List[Dict]:
    """Up to 3 actor slots over keyframes 1..seconds-1 (relative seconds)."""
    n_key = seconds - 1
    blank = int(rng.integers(1, n_key + 1)) if n_key >= 3 else -1
    motions: List[str] = []
    actors: List[Dict] = []
    for _ in range(3):
        k = 1 + int(rng.integers(0, 4))
        while k <= n_key:
            if k == blank:
                k += 1
                continue
            k1 = min(k + int(rng.integers(0, 3)), n_key)
            if k < blank <= k1:
                k1 = blank - 1
            if not motions:
                motions = [MOTIONS[i] for i in rng.permutation(5)]
            actors.append(sample_actor(rng, motions.pop(), k, k1, W, H))
            k = k1 + 1 + int(rng.integers(0, 4))
    actors.sort(key=lambda a: (a['k0'], a['k1']))
    for i, a in enumerate(actors):
        a['entity_id'] = i
    return actors


def write_video(path: str, rng: np.random.Generator, actors: List[Dict],
                fps: int, seconds: int, W: int, H: int) -> int:
    """Render and write all frames of one video; return the frame count."""
    m = 24
    canvas = make_background(rng, W + 2 * m, H + 2 * m)
    pan = rng.uniform(8, 12, 2), rng.uniform(0, 2 * np.pi, 2)
    distract = [(rng.uniform(0, W, 2), rng.uniform(-20, 20, 2),
                 rng.uniform(6, 14, 2), str(rng.choice(['ellipse', 'rect'])),
                 255 * smooth_noise(rng, 16, 16, 2))
                for _ in range(int(rng.integers(2, 5)))]
    os.makedirs(path, exist_ok=True)
    n_frames = seconds * fps + 1
    for n in range(1, n_frames + 1):
        t = (n - 1) / fps
        ox, oy = (m + 0.9 * m * np.sin(2 * np.pi * t / pan[0] + pan[1]))
        img = canvas[int(round(oy)):int(round(oy)) + H,
                     int(round(ox)):int(round(ox)) + W].copy()
        for p0, v, sz, shape, tex in distract:
            x, y = (p0 + v * t) % (np.array([W, H]) + sz) - sz / 2
            blend(img, (x - sz[0] / 2, y - sz[1] / 2, x + sz[0] / 2,
                        y + sz[1] / 2), shape, tex)
        for a in actors:
            if a['t_on'] <= t <= a['t_off']:
                draw_actor(img, a, t)
        img = np.clip(img + 0.5, 0, 255).astype(np.uint8)
        fname = osp.join(path, f'img_{n:05d}.jpg')
        if cv2 is not None:
            cv2.imwrite(fname, img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        else:
            from PIL import Image
            Image.fromarray(img).save(fname, quality=90)
    return n_frames


def keyframe_rows(vid: str, actors: List[Dict], seconds: int, W: int, H: int,
                  rows: List[str], excluded: List[str], stats: Dict) -> None:
    """Append one video's CSV rows / excluded keys; count into ``stats``."""
    for k in range(1, seconds):
        key = f'{vid},{TIMESTAMP_START + k:04d}'
        here = [a for a in actors if a['k0'] <= k <= a['k1']]
        b = np.array([actor_box(a, float(k)) for a in here]).reshape(-1, 4)
        wh = np.clip(np.minimum(b[:, None, 2:], b[None, :, 2:]) -
                     np.maximum(b[:, None, :2], b[None, :, :2]), 0, None)
        inter, area = wh.prod(-1), (b[:, 2:] - b[:, :2]).prod(-1)
        iou = np.triu(inter / (area[:, None] + area[None] - inter), 1)
        stats['keyframes'] += 1
        stats['empty_keyframes'] += not here
        if iou.size and iou.max() > IOU_EXCLUDE:  # occluded: excluded,
            excluded.append(key)  # and unannotated, as in AVA
            continue
        stats['boxes'] += len(here)
        for a, box in zip(here, b / [W, H, W, H]):
            box = ','.join(f'{c:.3f}' for c in np.clip(box, 0, 1))
            rows.extend(f'{key},{box},{CLASSES.index(name) + 1},'
                        f'{a["entity_id"]}' for name in a['labels'])


def write_annotations(ann_dir: str, split: str, rows: Sequence[str],
                      excluded: Sequence[str]) -> None:
    """Write the split's CSVs and the pbtxt label map (two-space indent)."""
    items = [f'item {{\n  name: "{n}"\n  id: {i}\n}}'
             for i, n in enumerate(CLASSES, 1)]
    for name, lines in ((f'{split}.csv', rows), ('action_list.pbtxt', items),
                        (f'{split}_excluded_timestamps.csv', excluded)):
        with open(osp.join(ann_dir, name), 'w', newline='\n') as f:
            f.write(''.join(line + '\n' for line in lines))


def make_toy_ava(out_dir: str, videos: int = 48, seed: int = 0,
                 fps: int = 10, size: Tuple[int, int] = (160, 128),
                 seconds: int = 14) -> Dict:
    """Generate the data set into ``out_dir`` and return a summary dict.

    ``summary['tracks'][video_id]`` lists each actor's parameters (use
    :func:`actor_box` for its box at any time).
    """
    assert videos >= 1 and seconds >= 2 and fps >= 1
    W, H = size
    ann_dir = osp.join(out_dir, 'annotations')
    os.makedirs(ann_dir, exist_ok=True)
    n_val = 0 if videos == 1 else max(1, round(videos / 4))
    vids = [f'toy_v{i:03d}' for i in range(videos)]
    splits = {'train': vids[:videos - n_val], 'val': vids[videos - n_val:]}
    summary: Dict = dict(
        fps=fps, size=[W, H], seconds=seconds, seed=seed, frames=0,
        timestamp_start=TIMESTAMP_START, classes=list(CLASSES),
        timestamp_end=TIMESTAMP_START + seconds, start_index=1,
        filename_tmpl='img_{:05}.jpg', splits={}, tracks={})
    for split, names in splits.items():
        rows: List[str] = []
        excluded: List[str] = []
        stats = dict(videos=names, keyframes=0, empty_keyframes=0, boxes=0)
        for vid in names:
            rng = np.random.default_rng([seed, vids.index(vid)])
            actors = schedule_actors(rng, seconds, W, H)
            summary['frames'] += write_video(
                osp.join(out_dir, 'rawframes', vid), rng, actors, fps,
                seconds, W, H)
            keyframe_rows(vid, actors, seconds, W, H, rows, excluded, stats)
            summary['tracks'][vid] = [
                {n: v for n, v in a.items() if n != 'tex'} for a in actors]
        write_annotations(ann_dir, split, rows, excluded)
        summary['splits'][split] = dict(stats, rows=len(rows),
                                        excluded=len(excluded))
    meta = {k: v for k, v in summary.items() if k != 'tracks'}
    with open(osp.join(out_dir, 'meta.json'), 'w') as f:
        json.dump(meta, f, indent=2)
    return summary


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    """Command line entry point; prints a one-line summary."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('out_dir')
    for name, default in (('videos', 48), ('seed', 0), ('fps', 10)):
        p.add_argument(f'--{name}', type=int, default=default)
    p.add_argument('--size', type=int, nargs=2, default=(160, 128),
                   metavar=('W', 'H'))
    p.add_argument('--seconds', type=int, default=14)
    args = p.parse_args(argv)
    s = make_toy_ava(args.out_dir, args.videos, args.seed, args.fps,
                     tuple(args.size), args.seconds)
    per = '; '.join(f'{k}: ' + ', '.join(
        f'{n}={len(v) if isinstance(v, list) else v}' for n, v in st.items())
        for k, st in s['splits'].items())
    print(f'toy AVA -> {args.out_dir}: {s["frames"]} frames, '
          f'{s["size"][0]}x{s["size"][1]} @ {s["fps"]} fps; {per}; '
          f'{len(CLASSES)} classes: {",".join(CLASSES)}')
    return s


if __name__ == '__main__':
    main()
