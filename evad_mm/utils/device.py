"""Whether the installed mmcv can run EVAD's ops on a device."""
import functools
from typing import Union

import torch

MMCV_CUDA_INSTALL_HINT = (
    'Rebuild mmcv with CUDA ops in this environment: `EVAD_MM_CUDA=1 make '
    'install` in the evad_mm repository (or `EVAD_MM_CUDA=1 bash '
    'tools/install.sh`, with VENV=<the virtual environment> if it is not '
    "./.venv); it needs a CUDA build of torch and compiles with the system "
    "nvcc, or with NVIDIA's PyPI compiler when the system has none of "
    "torch's CUDA version (EVAD_MM_NVCC=pypi forces that).")


@functools.lru_cache(maxsize=None)
def mmcv_cuda_version() -> str:
    """The CUDA version mmcv's compiled ops were built with, e.g. '13.0';
    'not available' for a CPU-only build (probed once)."""
    from mmcv.ops import get_compiling_cuda_version
    return get_compiling_cuda_version()


def mmcv_has_cuda_ops() -> bool:
    """Whether mmcv's compiled ops (RoIAlign, nms, ...) have CUDA kernels."""
    return mmcv_cuda_version() != 'not available'


def check_mmcv_cuda_ops(device: Union[str, torch.device, None],
                        user: str = 'EVAD') -> None:
    """Raise early when ``device`` is a CUDA device that mmcv's ops cannot
    run on.

    A CPU-only mmcv fails only inside the first RoI head, with
    ``roi_align_forward_impl: implementation for device cuda:0 not found``;
    this names the cause and the fix instead.

    Args:
        device (str | torch.device | None): Where the model or its input
            goes; anything but a CUDA device passes.
        user (str): What needs the ops, for the message.

    Raises:
        RuntimeError: ``device`` is CUDA and mmcv was built without CUDA.
    """
    if device is None or torch.device(device).type != 'cuda':
        return
    if not mmcv_has_cuda_ops():
        import mmcv
        raise RuntimeError(
            f'{user} on {device} needs mmcv\'s CUDA ops (RoIAlign, nms), but '
            f'the installed mmcv {mmcv.__version__} was built with CPU ops '
            "only (mmcv.ops.get_compiling_cuda_version() is 'not "
            "available'), so its RoI heads would fail on CUDA tensors. "
            + MMCV_CUDA_INSTALL_HINT)
