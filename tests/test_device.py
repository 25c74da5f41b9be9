"""The early error for an mmcv built without CUDA ops: moving EVAD to CUDA,
or running it on a CUDA tensor, names the problem and the install command
(on CPU: the probe of mmcv's build is patched, or is really CPU-only)."""
import pytest
import torch

from evad_mm.registry import MODELS
from evad_mm.utils import device as device_utils
from tests.conftest import toy_model_cfg

FIX = 'EVAD_MM_CUDA=1 make install'


@pytest.fixture
def cpu_only_mmcv(monkeypatch):
    """mmcv reports a CPU-only build, as a CPU-only wheel does."""
    monkeypatch.setattr(device_utils, 'mmcv_cuda_version',
                        lambda: 'not available')


@pytest.fixture(scope='module')
def model():
    return MODELS.build(toy_model_cfg())


class _ClaimsCuda(torch.Tensor):
    """A CPU tensor that reports a CUDA device (no GPU here)."""

    @property
    def device(self):
        return torch.device('cuda', 0)


@pytest.mark.parametrize('move', [
    lambda m: m.to('cuda'),
    lambda m: m.to(torch.device('cuda', 1)),
    lambda m: m.cuda(),
], ids=['to-cuda', 'to-cuda-1', 'cuda'])
def test_moving_evad_to_cuda_raises_before_anything_moves(
        cpu_only_mmcv, model, move):
    with pytest.raises(RuntimeError, match=FIX) as error:
        move(model)
    assert "built with CPU ops only" in str(error.value)
    assert all(p.device.type == 'cpu' for p in model.parameters())
    assert model.data_preprocessor.device.type == 'cpu'


def test_forward_on_a_cuda_tensor_raises(cpu_only_mmcv, model):
    inputs = torch.zeros(1, 3, 8, 64, 64).as_subclass(_ClaimsCuda)
    assert inputs.device.type == 'cuda'
    with pytest.raises(RuntimeError, match=FIX):
        model(inputs, mode='tensor')


def test_cpu_use_and_a_cuda_build_pass(cpu_only_mmcv, monkeypatch, model):
    model.to('cpu')
    model.cpu()
    device_utils.check_mmcv_cuda_ops('cpu')
    device_utils.check_mmcv_cuda_ops(None)
    monkeypatch.setattr(device_utils, 'mmcv_cuda_version', lambda: '13.0')
    device_utils.check_mmcv_cuda_ops('cuda:0')
    device_utils.check_mmcv_cuda_ops(torch.device('cuda', 3))


@pytest.mark.skipif(
    device_utils.mmcv_has_cuda_ops(),
    reason='the installed mmcv has CUDA ops')
def test_the_real_cpu_only_build_is_detected(model):
    # no patching: mmcv's own get_compiling_cuda_version() says so
    with pytest.raises(RuntimeError, match=FIX):
        model.to('cuda')
