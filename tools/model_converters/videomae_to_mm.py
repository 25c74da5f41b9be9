"""Convert original VideoMAE (V2) checkpoints to EVADViT weights.

    python tools/model_converters/videomae_to_mm.py IN.pth OUT.pth \\
        [--num-frames 16] [--img-size 224] [--allow-partial]

Weights may be nested under ``model`` / ``module`` / ``state_dict`` and
prefixed ``encoder.`` (pre-training) or ``backbone.``. The output holds
``backbone.*`` keys: load it with ``init_cfg=dict(type='Pretrained',
checkpoint=OUT, prefix='backbone.')`` on the backbone, or as it is into a
whole EVAD (``load_from``). Pre-training decoder / classifier keys are
dropped and listed. A fine-tuned model's ``fc_norm`` (after mean pooling)
is dropped too: EVADViT's ``norm`` then keeps its initialisation, as in the
authors' code. The sinusoid ``pos_embed`` is not stored by VideoMAE; it is
computed for ``--num-frames`` x ``--img-size``.
"""
import argparse
import os.path as osp
import re
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _common import (ConversionError, load_state_dict, preview,  # noqa: E402
                     rename, save, vit_rules)

RULES = vit_rules('', '') + [(r'pos_embed', 'pos_embed')]  # if learnable
DROP = [r'(decoder|head|fc_norm|cls_head)\..*', r'encoder_to_decoder\..*',
        r'mask_token']


def strip_prefix(key):
    return re.sub(r'^(encoder|backbone)\.', '', key)


def check_blocks(out):
    """Keys that blocks lack but other blocks have (a truncated file)."""
    per_block = {}
    for key in out:
        m = re.fullmatch(r'blocks\.(\d+)\.(.+)', key)
        if m:
            per_block.setdefault(int(m[1]), set()).add(m[2])
    names = set().union(*per_block.values()) if per_block else set()
    depth = max(per_block, default=-1) + 1
    missing = [f'blocks.{i}.{n}' for i in range(depth)
               for n in sorted(names - per_block.get(i, set()))]
    for key in ('weight', 'bias'):
        if f'patch_embed.projection.{key}' not in out:
            missing.insert(0, f'patch_embed.projection.{key}')
    return missing, depth


def convert(src_path, dst_path, num_frames=16, img_size=224,
            allow_partial=False):
    from mmaction.models.backbones.vit_mae import get_sinusoid_encoding
    src, _ = load_state_dict(src_path)
    src = {strip_prefix(k): v for k, v in src.items()}
    out, dropped, unmapped = rename(src, RULES, DROP)
    missing, depth = check_blocks(out)
    for what, keys in (('dropped (not the encoder)', dropped),
                       ('source keys not mapped', unmapped),
                       ('backbone keys missing', missing)):
        if keys:
            print(f'{what}: {preview(keys)}')
    if (unmapped or missing) and not allow_partial:
        raise ConversionError(
            f'{len(unmapped)} source key(s) could not be mapped and '
            f'{len(missing)} backbone key(s) are missing; pass '
            '--allow-partial to save what was converted.')
    proj = out.get('patch_embed.projection.weight')
    if 'pos_embed' not in out and proj is not None:
        tubelet, patch = proj.shape[2], proj.shape[3]
        num = (num_frames // tubelet) * (img_size // patch)**2
        out['pos_embed'] = get_sinusoid_encoding(num, proj.shape[0])
    if 'norm.weight' not in out:
        print('No final `norm` in the checkpoint: EVADViT keeps its '
              'initialisation (unit LayerNorm).')
    meta = dict(converted_from=osp.basename(src_path),
                converter='videomae_to_mm', depth=depth,
                embed_dims=None if proj is None else proj.shape[0],
                num_frames=num_frames, img_size=img_size, dropped=dropped,
                unmapped=unmapped, missing=missing)
    save(dst_path, {'backbone.' + k: v for k, v in out.items()}, meta)
    return meta


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='VideoMAE checkpoint')
    parser.add_argument('dst', help='mmengine checkpoint to write')
    parser.add_argument('--num-frames', type=int, default=16,
                        help='frames the position table is made for')
    parser.add_argument('--img-size', type=int, default=224,
                        help='frame size the position table is made for')
    parser.add_argument('--allow-partial', action='store_true')
    args = parser.parse_args(argv)
    try:
        convert(args.src, args.dst, args.num_frames, args.img_size,
                args.allow_partial)
    except ConversionError as err:
        sys.exit(f'Error: {err}')


if __name__ == '__main__':
    main()
