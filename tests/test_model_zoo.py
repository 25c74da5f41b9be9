"""configs/metafile.yml is valid model-index and names real configs; the
configs' loss normalisation."""
import os.path as osp

import pytest
from mmengine.config import Config

from evad_mm.registry import MODELS
from tests.conftest import REPO, toy_model_cfg


def test_metafile_lists_existing_configs_with_published_results():
    from modelindex.load_model_index import load
    index = load(osp.join(REPO, 'model-index.yml'))
    index.build_models_with_collections()
    assert len(index.models) == 4
    for model in index.models:
        path = osp.join(REPO, model.config)
        assert osp.exists(path), path
        cfg = Config.fromfile(path)
        assert cfg.model.type == 'EVAD'
        assert model.metadata.data['Published'] is True
        assert model.results[0].metrics['frame-mAP@0.5'] > 30
        rate = model.metadata.data['Keep Rate']
        assert cfg.model.backbone.keep_rate == rate


@pytest.mark.parametrize('config,num_terms,action_weight', [
    ('evad_vitb_ava.py', 24, 12.), ('evad_vitl_ava.py', 30, 6.),
    ('evad_toy_ava.py', 11, 12.)])
def test_losses_are_divided_by_the_number_of_loss_terms(
        config, num_terms, action_weight):
    """The authors divide the total loss by its number of terms, 3 per
    localization stage and 1 per decoder block (24 for ViT-B, 30 for
    ViT-L): EVAD derives it from the built heads (the configs' stage and
    decoder counts, here with narrow layers)."""
    model = Config.fromfile(osp.join(REPO, 'configs', config)).model
    model.backbone = dict(toy_model_cfg(evad_layout=True)['backbone'],
                          init_cfg=None)
    model.neck.update(in_channels=128, out_channels=32)
    model.rpn_head.proposal_feature_channel = 32
    roi = model.roi_head
    roi.update(proposal_feature_channel=32)
    roi.bbox_roi_extractor.out_channels = 32
    roi.bbox_head.update(in_channels=32, feedforward_channels=32, num_heads=2)
    roi.bbox_head.dynamic_conv_cfg.update(in_channels=32, out_channels=32,
                                          feat_channels=8)
    model.action_head.update(in_channels=128, embed_dims=32, num_heads=2,
                             hidden_channels=16, pos_grid=(4, 8, 8))
    assert 3 * roi.num_stages + model.action_head.depth == num_terms
    evad = MODELS.build(model)
    assert evad.roi_head.stage_loss_weights == [1. / num_terms] * \
        roi.num_stages
    assert evad.action_head.loss_weight == action_weight / num_terms
    del model.train_cfg['normalize_losses']
    plain = MODELS.build(model)
    assert plain.roi_head.stage_loss_weights == [1.] * roi.num_stages
    assert plain.action_head.loss_weight == action_weight
