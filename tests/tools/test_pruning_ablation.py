"""tools/analysis/pruning_ablation.py: the ablation commands build valid
models, and the tables come from mmengine work dirs (fake ones here; a real
one in tests/test_toy_16f_config.py)."""
import json
import os.path as osp
import shlex

import pytest
from mmengine.config import Config, DictAction

from evad_mm.registry import MODELS
from tests.conftest import REPO, load_tool

ablation = load_tool('analysis', 'pruning_ablation')


def options(tokens):
    import argparse
    namespace = argparse.Namespace()
    DictAction(option_strings=[], dest='cfg')(None, namespace, tokens)
    return namespace.cfg


def test_commands_are_valid_runs():
    lines = ablation.commands('work_dirs/ablation', [r.name for r in
                                                     ablation.RUNS],
                              [8, 16], [0, 1])
    train = [shlex.split(x) for x in lines if ' train mmaction ' in x]
    test = [shlex.split(x) for x in lines if ' test mmaction ' in x]
    assert len(train) == len(ablation.RUNS) * 2 * 2
    assert len(test) == len(ablation.TEST_RUNS) * 2 * 2 * len(
        ablation.TEST_KEEP_RATES)
    configs = {}
    for cmd in train:
        config = cmd[3]
        work_dir = cmd[cmd.index('--work-dir') + 1]
        opts = options(cmd[cmd.index('--cfg-options') + 1:])
        name, frames, seed = osp.basename(work_dir).split('_')
        run = ablation.RUNS_BY_NAME[name]
        assert config == ablation.CONFIGS[int(frames[:-1])]
        assert opts == {
            'model.backbone.keep_rate': run.keep_rate,
            'model.backbone.pruning': run.pruning,
            'model.backbone.keyframe_weight': run.keyframe_weight,
            'randomness.seed': int(seed[4:])
        }
        if config not in configs:
            configs[config] = Config.fromfile(osp.join(REPO, config))
        cfg = configs[config].copy()
        assert cfg.randomness.seed == 0  # the key the runs set exists
        cfg.merge_from_dict(opts)
        backbone = MODELS.build(cfg.model.backbone)  # a valid setting
        assert backbone.pruning == run.pruning
        assert backbone.keep_rate == (run.keep_rate, ) * 3
    for cmd in test:
        checkpoint = cmd[cmd.index('--checkpoint') + 1]
        assert checkpoint.startswith('$(ls -t work_dirs/ablation/')
        assert checkpoint.split()[2].split('/')[2].split('_')[0] in \
            ablation.TEST_RUNS
        rate = options(cmd[cmd.index('--cfg-options') + 1:])
        assert set(rate) == {'model.backbone.keep_rate'}
    assert lines[0] == '#!/usr/bin/env bash'


def write_run(work_dir, timestamp, val_curve, start='18:00:00',
              end='18:10:30'):
    """A training log dir as mmengine writes it."""
    log_dir = osp.join(work_dir, timestamp)
    vis = osp.join(log_dir, 'vis_data')
    import os
    os.makedirs(vis)
    with open(osp.join(vis, 'scalars.json'), 'w') as f:
        for epoch, value in val_curve.items():
            f.write(json.dumps(dict(lr=1e-4, loss=1.0, iter=epoch * 91,
                                    epoch=epoch, step=epoch * 91)) + '\n')
            f.write(json.dumps({'mAP/overall': value,
                                'mAP/person_movement': value,
                                'data_time': 0.1, 'time': 1.0,
                                'step': epoch}) + '\n')
    with open(osp.join(log_dir, f'{timestamp}.log'), 'w') as f:
        f.write(f'2026/12/01 {start} - mmengine - INFO - \n')
        f.write('System environment:\n    sys.platform: linux\n')
        f.write(f'2026/12/01 {end} - mmengine - INFO - Epoch(val) done\n')


def write_test(work_dir, timestamp, value):
    log_dir = osp.join(work_dir, timestamp)
    import os
    os.makedirs(osp.join(log_dir, 'vis_data'))
    with open(osp.join(log_dir, f'{timestamp}.json'), 'w') as f:
        json.dump({'mAP/overall': value, 'data_time': 0.1, 'time': 1.}, f)


@pytest.fixture
def fake_root(tmp_path):
    root = str(tmp_path / 'ablation')
    # seed 0: interrupted after epoch 4 and resumed (a second timestamp)
    write_run(osp.join(root, 'keyframe_8f_seed0'), '20261201_180000',
              {2: 0.1, 4: 0.3})
    write_run(osp.join(root, 'keyframe_8f_seed0'), '20261201_190000',
              {4: 0.35, 6: 0.5, 8: 0.4}, start='19:00:00', end='19:05:00')
    write_run(osp.join(root, 'keyframe_8f_seed1'), '20261201_200000',
              {2: 0.2, 4: 0.7, 6: 0.6})
    write_run(osp.join(root, 'random_8f_seed0'), '20261201_210000',
              {2: 0.05, 4: 0.25, 6: 0.25})
    for rate, value in ((1.0, 0.6), (0.9, 0.55), (0.5, 0.2)):
        write_test(ablation.eval_dir(root, 'rho1.0', 8, 0, rate),
                   '20261202_100000', value)
    write_run(osp.join(root, 'rho1.0_8f_seed0'), '20261201_220000',
              {2: 0.6})
    # an older and a newer test in one dir: the newer counts
    write_test(ablation.eval_dir(root, 'keyframe', 8, 0, 0.7),
               '20261202_090000', 0.1)
    write_test(ablation.eval_dir(root, 'keyframe', 8, 0, 0.7),
               '20261202_110000', 0.5)
    return root


def test_curves_results_and_times(fake_root):
    work_dir = osp.join(fake_root, 'keyframe_8f_seed0')
    assert ablation.validation_curve(work_dir) == {2: 0.1, 4: 0.35, 6: 0.5,
                                                   8: 0.4}
    assert ablation.wall_seconds(work_dir) == 630 + 300
    assert ablation.eval_result(
        ablation.eval_dir(fake_root, 'keyframe', 8, 0, 0.7)) == 0.5
    assert ablation.eval_result(osp.join(fake_root, 'absent')) is None
    assert ablation.validation_curve(osp.join(fake_root, 'absent')) == {}


def test_tables(fake_root):
    train, test = ablation.tables(fake_root)
    rows = {r.split(' | ')[0][2:]: r for r in train[2:]}
    names = {r.name: r.what for r in ablation.RUNS}
    assert list(rows) == [names['rho1.0'], names['keyframe'],
                          names['random']]
    # two seeds: best 0.5 (epoch 6) and 0.7 (epoch 4); last 0.4 and 0.6
    assert rows[names['keyframe']] == (
        f'| {names["keyframe"]} | 8 | keyframe | 0.7 | 1 | 2 | '
        '0.6000 +- 0.1414 | 6, 4 | 0.5000 +- 0.1414 | 13 min 00 s |')
    # ties: the earliest best epoch
    assert '| 1 | 0.2500 | 4 | 0.2500 | 10 min 30 s |' in rows[
        names['random']]
    assert test[0].startswith('| trained at | frames | seeds | test rho 1 |')
    assert test[2] == ('| rho 1 (rho1.0) | 8 | 1 | 0.6000 | 0.5500 | - | - '
                       '| - | 0.2000 |')
    assert test[3] == ('| rho 0.7 (keyframe) | 8 | 1 | - | - | - | 0.5000 '
                       '| - | - |')
    assert len(test) == 4


def test_main(fake_root, tmp_path, capsys):
    assert ablation.main(['table', '--work-root', fake_root]) == 0
    out = capsys.readouterr().out
    assert 'Validation frame-mAP@0.5' in out and '| rho 1 (rho1.0) |' in out
    assert ablation.main(['table', '--work-root', str(tmp_path / 'no')]) == 1
    assert 'no ablation run found' in capsys.readouterr().err
    assert ablation.main(['commands', '--runs', 'random', '--seeds', '3'
                          ]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [x for x in lines if 'mim' in x.lower() and 'train' in x] == [
        '"$MIM" train mmaction configs/evad_toy_ava.py --work-dir '
        'work_dirs/ablation/random_8f_seed3 --cfg-options '
        'model.backbone.keep_rate=0.7 model.backbone.pruning=random '
        'model.backbone.keyframe_weight=1 randomness.seed=3'
    ]
    assert not [x for x in lines if ' test ' in x]  # no rho1.0 / keyframe
