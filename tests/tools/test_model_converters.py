"""Round trips of tools/model_converters on randomly initialised toy models.

The authors' layout is written here from our modules, independently of the
converters' rename tables, then converted back with the tools.
"""
import copy
import os.path as osp

import pytest
import torch

from evad_mm.registry import MODELS
from evad_mm.utils.checkpoint import load_checkpoint, safe_torch_load
from tests.conftest import (TOY_EVAD_LAYOUT, action_samples, load_tool,
                            toy_model_cfg)

# the layout of the authors' and VideoMAE checkpoints
TOY = TOY_EVAD_LAYOUT
CODE_RAN = []


official = load_tool('model_converters', 'official_evad_to_mm')
videomae = load_tool('model_converters', 'videomae_to_mm')


def perturbed(model, seed):
    """Distinct random values in every tensor (norms and biases too), so
    that any swapped or skipped tensor changes the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


@pytest.fixture(scope='module')
def toy():
    torch.manual_seed(0)
    model = MODELS.build(toy_model_cfg(evad_layout=True))
    model.init_weights()
    return perturbed(model, 1)


def params(dst, prefix, module):
    for name, p in module.named_parameters(recurse=False):
        dst[f'{prefix}.{name}'] = p


def vit_block(dst, prefix, blk):
    params(dst, f'{prefix}.norm1', blk.norm1)
    params(dst, f'{prefix}.attn', blk.attn)  # qkv bias parts: q_bias, v_bias
    params(dst, f'{prefix}.attn.qkv', blk.attn.qkv)
    params(dst, f'{prefix}.attn.proj', blk.attn.proj)
    params(dst, f'{prefix}.norm2', blk.norm2)
    params(dst, f'{prefix}.mlp.fc1', blk.mlp.layers[0][0])
    params(dst, f'{prefix}.mlp.fc2', blk.mlp.layers[1])


def authors_layout(model):
    """``model_state`` as the authors' EVAD would hold these weights."""
    d = {}
    bb = model.backbone
    params(d, 'patch_embed.proj', bb.patch_embed.projection)
    for i, blk in enumerate(bb.blocks):
        vit_block(d, f'blocks.{i}', blk)
    params(d, 'norm', bb.norm)
    for i in range(4):  # detectron2 names levels by stride 2**l, l = 2..5
        params(d, f'fpn_lateral{i + 2}', model.neck.fpn.lateral_convs[i].conv)
        params(d, f'fpn_output{i + 2}', model.neck.fpn.fpn_convs[i].conv)
    d['init_proposal_features.weight'] = \
        model.rpn_head.init_proposal_features.weight
    d['init_proposal_boxes.weight'] = \
        model.rpn_head.init_proposal_bboxes.weight
    for s, head in enumerate(model.roi_head.bbox_head):
        p = f'det_head.s0_headseries.{s}'
        attn = head.attention.attn
        d[f'{p}.self_attn.in_proj_weight'] = attn.in_proj_weight
        d[f'{p}.self_attn.in_proj_bias'] = attn.in_proj_bias
        params(d, f'{p}.self_attn.out_proj', attn.out_proj)
        iic = head.instance_interactive_conv
        for theirs, ours in (('dynamic_layer', iic.dynamic_layer),
                             ('norm1', iic.norm_in), ('norm2', iic.norm_out),
                             ('out_layer', iic.fc_layer),
                             ('norm3', iic.fc_norm)):
            params(d, f'{p}.inst_interact.{theirs}', ours)
        params(d, f'{p}.norm1', head.attention_norm)
        params(d, f'{p}.norm2', head.instance_interactive_conv_norm)
        params(d, f'{p}.norm3', head.ffn_norm)
        params(d, f'{p}.linear1', head.ffn.layers[0][0])
        params(d, f'{p}.linear2', head.ffn.layers[1])
        for j, m in enumerate(head.cls_fcs):
            params(d, f'{p}.cls_module.{j}', m)
        for j, m in enumerate(head.reg_fcs):
            params(d, f'{p}.reg_module.{j}', m)
        # softmax over (person, no-object) with a zero no-object row equals
        # the sigmoid of the person row
        w, b = head.fc_cls.weight, head.fc_cls.bias
        d[f'{p}.class_logits.weight'] = torch.cat([w, torch.zeros_like(w)])
        d[f'{p}.class_logits.bias'] = torch.cat([b, torch.zeros_like(b)])
        params(d, f'{p}.bboxes_delta', head.fc_reg)
    ah = model.action_head
    d['det_head.encoder_to_decoder.weight'] = ah.encoder_to_decoder.weight
    d['det_head.mask_token'] = ah.mask_token
    for j, (blk, cls) in enumerate(zip(ah.blocks, ah.classifiers)):
        p = f'det_head.decoder.blocks.{j}'
        vit_block(d, p, blk)
        params(d, f'{p}.act_module.0', cls[0])
        params(d, f'{p}.act_module.1', cls[1])
        params(d, f'{p}.action_logits', cls[3])
    d['criterion.empty_weight'] = torch.tensor([1., .1])
    return {k: v.detach().clone() for k, v in d.items()}


def write(path, state, **extra):
    torch.save(dict(model_state=state, epoch=12, **extra), path)
    return str(path)


def predict(model):
    samples = action_samples([2, 1], size=(64, 80))
    g = torch.Generator().manual_seed(3)
    inputs = [torch.randint(0, 256, (3, 8, 64, 80), dtype=torch.uint8,
                            generator=g) for _ in samples]
    data = model.data_preprocessor(dict(inputs=inputs, data_samples=samples))
    with torch.no_grad():
        return [(r.pred_instances.bboxes, r.pred_instances.scores)
                for r in model(**data, mode='predict')]


def test_authors_checkpoint_round_trip(toy, tmp_path, capsys):
    state = {'module.' + k: v for k, v in authors_layout(toy).items()}
    cfg = 'MODEL:\n  KTP:\n    KEEP_RATES: [1.0, 1.0, 0.7, 0.7]\n'
    src = write(tmp_path / 'evad.pth', state, cfg=cfg)
    dst = str(tmp_path / 'mm.pth')
    official.main([src, dst, '--config', TOY, '--token-order', 'reference'])
    out = capsys.readouterr().out
    assert 'model.action_head.token_order=reference' in out
    ckpt = safe_torch_load(dst)
    assert ckpt['meta']['token_order'] == 'reference'
    assert ckpt['meta']['keep_rates'] == [1.0, 1.0, 0.7, 0.7]
    ours = toy.state_dict()
    assert sorted(ckpt['state_dict']) == sorted(ours)
    for key, value in ours.items():
        assert torch.equal(ckpt['state_dict'][key], value), key

    fresh = perturbed(copy.deepcopy(toy), 5)
    before = predict(fresh)
    fresh.load_state_dict(ckpt['state_dict'], strict=True)
    expected, got = predict(toy), predict(fresh)
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(expected, before))
    for (boxes, scores), (boxes2, scores2) in zip(expected, got):
        assert torch.equal(boxes, boxes2) and torch.equal(scores, scores2)


def test_softmax_person_classifier_becomes_sigmoid(toy, tmp_path):
    state = authors_layout(toy)
    g = torch.Generator().manual_seed(0)
    key = 'det_head.s0_headseries.1.class_logits'
    state[key + '.weight'] = torch.randn(2, 64, generator=g)
    state[key + '.bias'] = torch.randn(2, generator=g)
    dst = str(tmp_path / 'mm.pth')
    official.main([write(tmp_path / 'e.pth', state), dst, '--config', TOY])
    conv = safe_torch_load(dst)['state_dict']
    x = torch.randn(10, 64, generator=g)
    theirs = (x @ state[key + '.weight'].T + state[key + '.bias']).softmax(-1)
    ours = x @ conv['roi_head.bbox_head.1.fc_cls.weight'].T \
        + conv['roi_head.bbox_head.1.fc_cls.bias']
    torch.testing.assert_close(ours.sigmoid()[:, 0], theirs[:, 0])


def test_partial_checkpoint_needs_allow_partial(toy, tmp_path, capsys):
    full = authors_layout(toy)
    state = {k: v for k, v in full.items()
             if k.startswith(('patch_embed.', 'blocks.', 'norm.'))}
    src, dst = write(tmp_path / 'bb.pth', state), str(tmp_path / 'mm.pth')
    with pytest.raises(SystemExit) as err:
        official.main([src, dst, '--config', TOY])
    assert 'left unfilled' in str(err.value) and not osp.exists(dst)
    assert 'neck.fpn.lateral_convs.0.conv.weight' in capsys.readouterr().out
    official.main([src, dst, '--config', TOY, '--allow-partial'])
    conv = safe_torch_load(dst)['state_dict']
    assert conv and all(k.startswith('backbone.') for k in conv)
    assert len(conv) == len(state) + 1  # + the computed pos_embed
    assert torch.equal(conv['backbone.blocks.1.mlp.layers.1.weight'],
                       state['blocks.1.mlp.fc2.weight'])


def test_unknown_keys_and_wrong_widths_are_refused(toy, tmp_path, capsys):
    state = authors_layout(toy)
    state['det_head.decoder.blocks.0.gamma_1'] = torch.ones(128)
    dst = str(tmp_path / 'mm.pth')
    with pytest.raises(SystemExit, match='could not be mapped'):
        official.main([write(tmp_path / 'a.pth', state), dst, '--config',
                       TOY])
    assert 'det_head.decoder.blocks.0.gamma_1' in capsys.readouterr().out
    vit_l = {'patch_embed.proj.weight': torch.zeros(1024, 3, 2, 16, 16),
             'blocks.0.norm1.weight': torch.zeros(1024)}
    with pytest.raises(SystemExit, match='configs/evad_vitl_ava.py'):
        official.main([write(tmp_path / 'l.pth', vit_l), dst, '--config',
                       TOY, '--allow-partial'])


def mark_code_ran():
    CODE_RAN.append('unpickled')


class RunsCode:

    def __reduce__(self):
        return mark_code_ran, ()


def test_pickle_needing_code_execution_is_refused(tmp_path):
    path = str(tmp_path / 'evil.pth')
    torch.save(dict(model_state={'norm.weight': torch.ones(2)},
                    extra=RunsCode()), path)
    for tool in (official, videomae):
        with pytest.raises(SystemExit, match='arbitrary code execution'):
            tool.main([path, str(tmp_path / 'out.pth')])
    assert CODE_RAN == []


@pytest.mark.parametrize('nest,prefix,finetuned',
                         [('model', 'encoder.', False),
                          ('module', 'backbone.', True)])
def test_videomae_checkpoint_loads_into_evadvit(tmp_path, nest, prefix,
                                                finetuned, capsys):
    cfg = toy_model_cfg(evad_layout=True)['backbone']
    torch.manual_seed(0)
    vit = perturbed(MODELS.build(cfg), 2)
    src = {}
    params(src, 'patch_embed.proj', vit.patch_embed.projection)
    for i, blk in enumerate(vit.blocks):
        vit_block(src, f'blocks.{i}', blk)
    if finetuned:  # mean pooling: fc_norm and a classifier, no norm
        src.update({'fc_norm.weight': torch.ones(128),
                    'fc_norm.bias': torch.zeros(128),
                    'head.weight': torch.zeros(400, 128)})
    else:  # pre-training: encoder norm, decoder
        params(src, 'norm', vit.norm)
    src = {prefix + k: v.detach().clone() for k, v in src.items()}
    if not finetuned:
        src.update({'decoder.blocks.0.norm1.weight': torch.ones(64),
                    'encoder_to_decoder.weight': torch.zeros(64, 128),
                    'mask_token': torch.zeros(1, 1, 64)})
    path, dst = str(tmp_path / 'mae.pth'), str(tmp_path / 'vit.pth')
    torch.save({nest: src}, path)
    videomae.main([path, dst, '--num-frames', '8', '--img-size', '128'])
    dropped = safe_torch_load(dst)['meta']['dropped']
    assert ('head.weight' in dropped) == finetuned
    assert ('mask_token' in dropped) != finetuned

    report = load_checkpoint(MODELS.build(cfg), dst, prefix='backbone.',
                             strict=False)
    assert report.unexpected == []
    assert report.missing == (['norm.weight', 'norm.bias'] if finetuned
                              else [])
    pretrained = MODELS.build(dict(cfg, init_cfg=dict(
        type='Pretrained', checkpoint=dst, prefix='backbone.')))
    pretrained.init_weights()
    for key, value in vit.state_dict().items():
        if finetuned and key.startswith('norm.'):
            continue
        assert torch.equal(pretrained.state_dict()[key], value), key


def test_videomae_truncated_checkpoint_is_refused(tmp_path):
    vit = MODELS.build(toy_model_cfg(evad_layout=True)['backbone'])
    src = {}
    params(src, 'patch_embed.proj', vit.patch_embed.projection)
    for i, blk in enumerate(vit.blocks):
        vit_block(src, f'encoder.blocks.{i}', blk)
    del src['encoder.blocks.3.mlp.fc2.weight']
    path = str(tmp_path / 'mae.pth')
    torch.save({'model': {k: v.detach() for k, v in src.items()}}, path)
    with pytest.raises(SystemExit, match='1 backbone key'):
        videomae.main([path, str(tmp_path / 'o.pth')])
