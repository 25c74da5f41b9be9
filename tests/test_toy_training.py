"""The main job on generated toy AVA data through the real OpenMMLab path:
AVADataset -> pipeline -> ActionDataPreprocessor -> EVAD -> Runner ->
AVAMetric, plus `mim train --resume` and 2-process (gloo) training."""
import importlib.util
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from tests.conftest import (REPO, TINY_TOY_MODEL, TOY_DATA_CONFIG,
                            TOY_EVAD_LAYOUT, load_tool)

PY = sys.executable
MIM = osp.join(osp.dirname(PY), 'mim')

# A smaller EVAD and 64x80 clips (no flip, so runs are comparable), iteration
# based; everything else comes from configs/evad_toy_ava.py.
TEST_CONFIG = TOY_DATA_CONFIG + '''
''' + TINY_TOY_MODEL + '''
train_dataloader.update(
    batch_size={batch}, sampler=dict(type='DefaultSampler', shuffle=False))
for loader in (train_dataloader, val_dataloader):
    loader['dataset']['pipeline'] = pipeline
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters={iters},
                 val_interval={val_interval})
# plain SGD: an update is the gradient itself, so a wrongly synchronised
# gradient shows (Adam's first steps hide gradient scale)
optim_wrapper = dict(_delete_=True, optimizer=dict(type='SGD', lr=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=4)
]
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(_delete_=True, type='CheckpointHook', by_epoch=False,
                    interval=2))
log_processor = dict(by_epoch=False)
custom_imports = dict(imports=['evad_mm', 'rank_dump_hook'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='RankDumpHook')]
'''

HOOK = '''
import os.path as osp
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmaction.registry import HOOKS


@HOOKS.register_module()
class RankDumpHook(Hook):
    """Saves every rank's weights before and after training (test helper)."""

    def _dump(self, runner, suffix):
        model = getattr(runner.model, 'module', runner.model)
        torch.save(model.state_dict(),
                   osp.join(runner.work_dir, f'rank{get_rank()}{suffix}.pth'))

    def before_train(self, runner):
        self._dump(runner, '_init')

    def after_train(self, runner):
        self._dump(runner, '')
'''


def _make_toy_ava(out_dir, **kwargs):
    return load_tool('make_toy_ava').make_toy_ava(str(out_dir), **kwargs)


@pytest.fixture(scope='module')
def toy_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp('toy')
    _make_toy_ava(root / 'data', videos=4, seconds=5, seed=1)
    (root / 'rank_dump_hook.py').write_text(HOOK)
    return root


def write_config(toy_dir, name, batch=2, iters=4, val_interval=100,
                 base=osp.join(REPO, 'configs', 'evad_toy_ava.py')):
    path = toy_dir / f'{name}.py'
    path.write_text(
        TEST_CONFIG.format(
            base=base,
            data=str(toy_dir / 'data'),
            batch=batch,
            iters=iters,
            val_interval=val_interval))
    return str(path)


def run(cmd, toy_dir, **env):
    env = dict(os.environ, PYTHONPATH=f'{toy_dir}{os.pathsep}{REPO}',
               OMP_NUM_THREADS='1', **env)
    proc = subprocess.run(cmd, cwd=str(toy_dir), env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def load_weights(path):
    return torch.load(path, map_location='cpu', weights_only=True)


def assert_same_weights(a, b, atol=1e-5):
    assert a.keys() == b.keys()
    diffs = {k: (a[k].float() - b[k].float()).abs().max().item() for k in a
             if a[k].numel()}
    worst = sorted(diffs.items(), key=lambda kv: -kv[1])[:5]
    assert worst[0][1] <= atol, worst


def assert_same_updates(init, a, b, rtol=1e-3):
    """The training updates of two runs agree to float tolerance: per
    tensor, the difference is tiny next to the update itself."""
    assert a.keys() == b.keys() == init.keys()
    moved = 0
    for k in a:
        if not a[k].is_floating_point():
            continue
        step_a, step_b = a[k] - init[k], b[k] - init[k]
        scale = step_b.abs().max().item()
        moved += scale > 0
        assert (step_a - step_b).abs().max().item() <= rtol * scale + 1e-7, k
    assert moved > len(a) // 2  # the runs did train


def test_runner_trains_and_evaluates_with_ava_metric(toy_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(toy_dir))
    monkeypatch.chdir(toy_dir)
    cfg = Config.fromfile(write_config(toy_dir, 'runner', iters=2,
                                       val_interval=2))
    cfg.work_dir = str(toy_dir / 'work_runner')
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.val_loop.run()
    assert 'mAP/overall' in metrics
    assert 0 <= metrics['mAP/overall'] <= 1
    assert osp.exists(osp.join(cfg.work_dir, 'iter_2.pth'))


def test_mim_train_resume_matches_straight_run(toy_dir):
    straight = write_config(toy_dir, 'straight', iters=4)
    run([MIM, 'train', 'mmaction', straight, '--work-dir', 'w_straight'],
        toy_dir)
    first = write_config(toy_dir, 'interrupted', iters=2)
    run([MIM, 'train', 'mmaction', first, '--work-dir', 'w_resume'], toy_dir)
    out = run([
        MIM, 'train', 'mmaction', straight, '--work-dir', 'w_resume',
        '--resume'
    ], toy_dir)
    assert 'resumed' in out.lower() or 'resume' in out.lower()
    a = load_weights(toy_dir / 'w_straight' / 'rank0.pth')
    b = load_weights(toy_dir / 'w_resume' / 'rank0.pth')
    assert_same_weights(a, b)
    ckpt = torch.load(toy_dir / 'w_resume' / 'iter_4.pth', weights_only=True)
    assert ckpt['meta']['iter'] == 4
    assert 'optimizer' in ckpt and 'param_schedulers' in ckpt


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_process_gloo_training_matches_one_process(toy_dir):
    # without the toy stem's BatchNorm, which normalises per process (and
    # PyTorch's SyncBatchNorm needs GPUs): the rest must match exactly
    one = write_config(toy_dir, 'one', batch=4, iters=2,
                       base=TOY_EVAD_LAYOUT)
    run([MIM, 'train', 'mmaction', one, '--work-dir', 'w_one'], toy_dir)
    two = write_config(toy_dir, 'two', batch=2, iters=2,
                       base=TOY_EVAD_LAYOUT)
    train_py = osp.join(
        osp.dirname(importlib.util.find_spec('mmaction').origin), '.mim',
        'tools', 'train.py')
    run([
        PY, '-m', 'torch.distributed.run', '--nproc_per_node=2',
        f'--master_port={_free_port()}', train_py, two, '--work-dir',
        'w_two', '--launcher', 'pytorch'
    ], toy_dir)
    rank0 = load_weights(toy_dir / 'w_two' / 'rank0.pth')
    rank1 = load_weights(toy_dir / 'w_two' / 'rank1.pth')
    for k in rank0:
        assert torch.equal(rank0[k], rank1[k]), k
    init = load_weights(toy_dir / 'w_two' / 'rank0_init.pth')
    assert_same_weights(init,
                        load_weights(toy_dir / 'w_one' / 'rank0_init.pth'), 0)
    assert_same_updates(init, rank0,
                        load_weights(toy_dir / 'w_one' / 'rank0.pth'))


def test_same_seed_deterministic_runs_give_the_same_losses(toy_dir,
                                                           monkeypatch):
    monkeypatch.syspath_prepend(str(toy_dir))
    monkeypatch.chdir(toy_dir)
    histories = []
    for run in range(2):
        cfg = Config.fromfile(write_config(toy_dir, f'seed{run}', iters=3))
        cfg.work_dir = str(toy_dir / f'work_seed{run}')
        cfg.randomness = dict(seed=0, deterministic=True)
        runner = Runner.from_cfg(cfg)
        runner.train()
        histories.append(
            runner.message_hub.get_scalar('train/loss').data[0].tolist())
    assert len(histories[0]) == 3
    assert histories[0] == histories[1]
