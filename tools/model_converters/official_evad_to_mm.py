"""Convert the EVAD authors' checkpoints to evad_mm's ``EVAD``.

The authors' code (MCG-NJU/EVAD, PySlowFast + detectron2) saves
``model_state``; the output is an mmengine ``dict(state_dict, meta)``.

    python tools/model_converters/official_evad_to_mm.py IN.pth OUT.pth \\
        [--token-order reference] [--allow-partial] [--config CONFIG]

Their 2-way softmax person classifier (row 0 person, row 1 no-object: their
test takes ``softmax(logits)[..., :-1]``) becomes our 1-class sigmoid:
``softmax(l)[0] == sigmoid(l0 - l1)``, so ``w = W[0] - W[1]``,
``b = b[0] - b[1]``. Position tables are not weights: ``backbone.pos_embed``
is taken from the built model.
"""
import argparse
import os.path as osp
import re
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _common import (REPO, ConversionError, load_state_dict,  # noqa: E402
                     preview, rename, save, vit_rules)

STAGE, DII = r'det_head\.s0_headseries\.(\d+)\.', r'roi_head.bbox_head.\1.'
DEC = r'det_head\.decoder\.blocks\.(\d+)\.'
WB = r'\.(weight|bias)'
RULES = vit_rules('', 'backbone.') + [
    # detectron2 FPN level l (stride 2**l) -> mmdet FPN input l - 2
    *[(f'fpn_lateral{lvl}' + WB, f'neck.fpn.lateral_convs.{lvl - 2}.conv.\\1')
      for lvl in range(2, 6)],
    *[(f'fpn_output{lvl}' + WB, f'neck.fpn.fpn_convs.{lvl - 2}.conv.\\1')
      for lvl in range(2, 6)],
    (r'init_proposal_features\.weight',
     'rpn_head.init_proposal_features.weight'),
    (r'init_proposal_boxes\.weight', 'rpn_head.init_proposal_bboxes.weight'),
    (STAGE + r'self_attn\.(in_proj_weight|in_proj_bias|out_proj\.weight|'
     r'out_proj\.bias)', DII + r'attention.attn.\2'),
    # Sparse R-CNN DynamicConv -> mmdet DynamicConv: params Linear, LN after
    # the 1st bmm (64), LN after the 2nd (256), Linear(49*256, 256), LN.
    (STAGE + r'inst_interact\.dynamic_layer' + WB,
     DII + r'instance_interactive_conv.dynamic_layer.\2'),
    (STAGE + r'inst_interact\.norm1' + WB,
     DII + r'instance_interactive_conv.norm_in.\2'),
    (STAGE + r'inst_interact\.norm2' + WB,
     DII + r'instance_interactive_conv.norm_out.\2'),
    (STAGE + r'inst_interact\.out_layer' + WB,
     DII + r'instance_interactive_conv.fc_layer.\2'),
    (STAGE + r'inst_interact\.norm3' + WB,
     DII + r'instance_interactive_conv.fc_norm.\2'),
    (STAGE + r'norm1' + WB, DII + r'attention_norm.\2'),
    (STAGE + r'norm2' + WB, DII + r'instance_interactive_conv_norm.\2'),
    (STAGE + r'norm3' + WB, DII + r'ffn_norm.\2'),
    (STAGE + r'linear1' + WB, DII + r'ffn.layers.0.0.\2'),
    (STAGE + r'linear2' + WB, DII + r'ffn.layers.1.\2'),
    (STAGE + r'(cls|reg)_module\.(\d+)' + WB, DII + r'\2_fcs.\3.\4'),
    (STAGE + r'class_logits' + WB, DII + r'fc_cls.\2'),
    (STAGE + r'bboxes_delta' + WB, DII + r'fc_reg.\2'),
    (r'det_head\.(encoder_to_decoder\.weight|mask_token)', r'action_head.\1'),
    *vit_rules('det_head.decoder.', 'action_head.')[1:4],  # block rules
    (DEC + r'act_module\.0\.weight', r'action_head.classifiers.\1.0.weight'),
    (DEC + r'act_module\.1' + WB, r'action_head.classifiers.\1.1.\2'),
    (DEC + r'action_logits' + WB, r'action_head.classifiers.\1.3.\2'),
]
DROP = [r'criterion\.empty_weight']  # CE class weights: config, not weights
FROM_MODEL = ['backbone.pos_embed']  # fixed sinusoid table (a buffer)


def build_state_dict(config):
    import evad_mm  # noqa: F401  (registers EVAD)
    from mmengine.config import Config
    from evad_mm.registry import MODELS
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None
    return MODELS.build(cfg.model).state_dict()


def describe(src):
    """Which ViT the source is, from its widths, for shape errors."""
    proj = src.get('patch_embed.proj.weight')
    if proj is None:
        return ''
    depth = len({k.split('.')[1] for k in src if k.startswith('blocks.')})
    name = {768: 'b', 1024: 'l'}.get(proj.shape[0])
    hint = f': pass --config configs/evad_vit{name}_ava.py' if name else ''
    return (f'\nThe checkpoint holds a ViT with {proj.shape[0]} dims and '
            f'{depth} blocks{hint}.')


def keep_rates(ckpt):
    """MODEL.KTP.KEEP_RATES of the yacs config saved beside the weights."""
    try:
        import yaml
        return [float(r) for r in
                yaml.safe_load(ckpt['cfg'])['MODEL']['KTP']['KEEP_RATES']]
    except Exception:  # no or another config: unknown
        return None


def convert(src_path, dst_path, config=None, token_order='position',
            allow_partial=False):
    config = config or osp.join(REPO, 'configs', 'evad_vitb_ava.py')
    src, ckpt = load_state_dict(src_path)
    out, dropped, unmapped = rename(src, RULES, DROP)
    ours = build_state_dict(config)
    for key in [k for k in out if re.search(r'fc_cls\.(weight|bias)$', k)]:
        if len(out[key]) == 2 and key in ours and len(ours[key]) == 1:
            # (person, no-object) softmax -> person sigmoid, exactly
            out[key] = out[key][:1] - out[key][1:]
    extra = [k for k in out if k not in ours]
    wrong = [f'{k} {tuple(v.shape)} vs ours {tuple(ours[k].shape)}'
             for k, v in out.items() if k in ours and v.shape != ours[k].shape]
    if extra or wrong:
        raise ConversionError(
            f'The checkpoint does not fit {config}:'
            + (f' not in our model {preview(extra)};' if extra else '')
            + (f' shape mismatch {preview(wrong, 3)}.' if wrong else '')
            + describe(src))
    for key in FROM_MODEL:
        out.setdefault(key, ours[key])
    unfilled = [k for k in ours if k not in out]
    for what, keys in (('dropped (not weights)', dropped),
                       ('source keys not mapped', unmapped),
                       ('our keys left unfilled', unfilled)):
        if keys:
            print(f'{what}: {preview(keys)}')
    if (unmapped or unfilled) and not allow_partial:
        raise ConversionError(
            f'{len(unmapped)} source key(s) could not be mapped and '
            f'{len(unfilled)} of our key(s) are left unfilled; pass '
            '--allow-partial to save what was converted.')
    meta = dict(converted_from=osp.basename(src_path), config=config,
                converter='official_evad_to_mm', token_order=token_order,
                keep_rates=keep_rates(ckpt), unmapped=unmapped,
                unfilled=unfilled)
    save(dst_path, {k: out[k] for k in ours if k in out}, meta)
    if token_order == 'reference':
        print('Run this checkpoint with --cfg-options '
              "model.action_head.token_order=reference")
    elif meta['keep_rates'] and min(meta['keep_rates']) < 1:
        print('Warning: trained with keep rates < 1 in the reference token '
              'order; convert with --token-order reference.')
    return meta


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help="authors' checkpoint (model_state)")
    parser.add_argument('dst', help='mmengine checkpoint to write')
    parser.add_argument('--token-order', choices=('position', 'reference'),
                        default='position',
                        help="'reference' for their keep rate < 1 weights")
    parser.add_argument('--allow-partial', action='store_true')
    parser.add_argument('--config', help='default configs/evad_vitb_ava.py')
    args = parser.parse_args(argv)
    try:
        convert(args.src, args.dst, args.config, args.token_order,
                args.allow_partial)
    except ConversionError as err:
        sys.exit(f'Error: {err}')


if __name__ == '__main__':
    main()
