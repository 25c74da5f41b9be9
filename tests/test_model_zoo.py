"""configs/metafile.yml is valid model-index and names real configs."""
import os.path as osp

from mmengine.config import Config

from tests.conftest import REPO


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
