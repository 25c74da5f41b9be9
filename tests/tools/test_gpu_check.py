"""tools/gpu_check.sh on a machine without a GPU: it reports the
environment, says that there is nothing more to check and exits 0 before
any test or benchmark runs."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO

SCRIPT = osp.join(REPO, 'tools', 'gpu_check.sh')


def run_check(tmp_path, venv):
    out = tmp_path / 'gpu_check.json'
    proc = subprocess.run(['bash', SCRIPT, str(out)],
                          env=dict(os.environ, VENV=venv),
                          capture_output=True, text=True, timeout=300)
    return proc, out


@pytest.mark.skipif(torch.cuda.is_available(),
                    reason='with a GPU the script runs everything')
def test_without_a_gpu_it_stops_early_with_exit_code_0(tmp_path):
    proc, out = run_check(tmp_path, sys.prefix)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == ('[gpu_check] no GPU present '
                         '(torch.cuda.is_available() is False): nothing '
                         'more to check')
    assert f'torch {torch.__version__}' in proc.stdout
    assert 'ops compiled with CUDA:' in proc.stdout
    assert 'pytest' not in proc.stdout and not out.exists()


def test_a_missing_environment_is_named(tmp_path):
    proc, out = run_check(tmp_path, str(tmp_path / 'no-venv'))
    assert proc.returncode == 1
    assert 'make install' in proc.stderr and not out.exists()
