"""configs/evad_toy_ava_16f.py (the toy with the paper's token proportions)
trains and validates through mmaction2's AVADataset and mmengine's Runner,
and tools/analysis/pruning_ablation.py reads the work dir it leaves."""
import math
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from tests.conftest import REPO, TOY_DATA_CONFIG, load_tool

CONFIG = osp.join(REPO, 'configs', 'evad_toy_ava_16f.py')

# the 16-frame toy config on a tiny generated set, two iterations
TEST_CONFIG = TOY_DATA_CONFIG + '''
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=2,
                 val_interval=2)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=2)
]
default_hooks = dict(
    # validation scalars at the iteration (an epoch-based run: the epoch)
    logger=dict(interval=1, log_metric_by_epoch=False),
    checkpoint=dict(_delete_=True, type='CheckpointHook', by_epoch=False,
                    interval=2))
log_processor = dict(by_epoch=False)
'''


def test_config_has_the_papers_token_proportions():
    cfg = Config.fromfile(CONFIG)
    toy = Config.fromfile(osp.join(REPO, 'configs', 'evad_toy_ava.py'))
    backbone = cfg.model.backbone
    assert backbone.num_frames == 16 and backbone.get('tubelet_size', 2) == 2
    for loader in (cfg.train_dataloader, cfg.val_dataloader,
                   cfg.test_dataloader):
        sample = loader.dataset.pipeline[0]
        assert sample.type == 'SampleAVAFrames'
        # 16 frames over the same 1.6 s as the toy's 8 frames 2 apart
        assert (sample.clip_len, sample.frame_interval) == (16, 1)
    toy_sample = toy.val_dataloader.dataset.pipeline[0]
    assert toy_sample.clip_len * toy_sample.frame_interval == 16
    assert cfg.model.action_head.pos_grid[0] == 8
    assert cfg.model.action_head.actor_cells == 8
    # the rest is the toy config's
    assert cfg.model.backbone.prune_layers == toy.model.backbone.prune_layers
    assert cfg.train_cfg == toy.train_cfg
    assert cfg.val_dataloader.dataset.ann_file == \
        toy.val_dataloader.dataset.ann_file


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp('toy16')
    load_tool('make_toy_ava').make_toy_ava(
        str(root / 'data'), videos=2, seconds=4, seed=1)
    path = root / 'tiny_16f.py'
    path.write_text(TEST_CONFIG.format(base=CONFIG, data=str(root / 'data')))
    cfg = Config.fromfile(str(path))
    work_dir = root / 'ablation' / 'keyframe_16f_seed0'
    cfg.work_dir = str(work_dir)
    runner = Runner.from_cfg(cfg)
    with runner.model.backbone.record_kept_tokens() as kept:
        runner.train()
    test_metrics = runner.test()
    return root, work_dir, kept, test_metrics


def test_trains_two_iterations_with_a_keyframe_of_one_eighth(trained):
    _, work_dir, kept, _ = trained
    assert osp.exists(work_dir / 'iter_2.pth')
    assert len(kept) == 3  # two training iterations, one validation clip
    first = kept[0]
    t, h, w = 8, 8, 10  # 16 frames / tubelet 2, 128x160 / 16
    n = t * h * w
    counts = []
    for _ in range(3):  # three pruning layers at 0.7
        n = math.ceil(0.7 * n)
        counts.append(n)
    assert [k.shape[1] for k in first] == counts
    keyframe = set(range((t // 2) * h * w, (t // 2 + 1) * h * w))
    assert h * w / (t * h * w) == 0.125
    assert set(first[-1][0, :h * w].tolist()) == keyframe


def test_ablation_table_reads_the_work_dir(trained):
    root, work_dir, _, test_metrics = trained
    ablation = load_tool('analysis', 'pruning_ablation')
    curve = ablation.validation_curve(str(work_dir))
    assert list(curve) == [2] and 0 <= curve[2] <= 1
    assert ablation.eval_result(str(work_dir)) == pytest.approx(
        test_metrics['mAP/overall'])
    assert ablation.wall_seconds(str(work_dir)) > 0
    train, _ = ablation.tables(str(root / 'ablation'))
    assert len(train) == 3
    assert (f'| 16 | keyframe | 0.7 | 1 | 1 | {curve[2]:.4f} | 2 |'
            in train[2])
