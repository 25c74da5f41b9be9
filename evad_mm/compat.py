"""Compatibility shims for the OpenMMLab stack evad_mm runs on.

``import evad_mm`` imports this module before anything imports mmaction, and
:func:`apply_all` applies every shim. Each one works around one upstream bug,
is idempotent and does nothing where the installed stack lacks that bug:

* :func:`patch_mmaction_drn`: mmaction2 1.2.0's wheel lacks
  ``mmaction/models/localizers/drn/`` (open-mmlab/mmaction2#2714).
* :func:`patch_numpy_aliases`: numpy 2 removed names mmaction2 1.2.0 uses.
* :func:`patch_mmengine_cpu_distributed`: mmengine 0.10.7 assumes CUDA for
  ``--launcher pytorch``; without it, train with gloo on the CPU.
* :func:`allow_mmengine_checkpoint_globals`: torch >= 2.6 loads with
  ``weights_only=True`` by default and mmengine 0.10.7 can no longer read its
  own checkpoints (open-mmlab/mmengine#1655). Fixed with an allow-list, never
  by turning unsafe unpickling back on.
* :func:`patch_multisports_tube_iou`: mmaction2 1.2.0's MultiSports
  video-mAP (``iou3dt_voc``) fails on numpy >= 2.4.

Checkpoints are read by :mod:`evad_mm.utils.checkpoint`, which loads with
``weights_only=True`` and this allow-list.
"""
import importlib.machinery
import importlib.util
import os
import pickle
import sys
import types

__all__ = [
    'apply_all', 'patch_mmaction_drn', 'patch_numpy_aliases',
    'allow_mmengine_checkpoint_globals', 'mmengine_checkpoint_safe_globals',
    'patch_mmengine_cpu_distributed', 'patch_multisports_tube_iou'
]

_DRN = 'mmaction.models.localizers.drn'
DRN_MESSAGE = ('DRN is not shipped in the mmaction2 1.2.0 wheel (upstream '
               'open-mmlab/mmaction2#2714); install mmaction2 from source to '
               'use it. evad_mm only put a stand-in module in its place so '
               'that `import mmaction.models` works.')


def _drn_missing():
    """True when mmaction2 is installed without ``models/localizers/drn``;
    found without importing ``mmaction.models`` (which is what fails)."""
    localizers = sys.modules.get('mmaction.models.localizers')
    if localizers is not None:
        dirs = list(localizers.__path__)
    else:
        spec = importlib.util.find_spec('mmaction')  # does not import it
        if spec is None or not spec.submodule_search_locations:
            return False  # no mmaction2 at all
        dirs = [os.path.join(p, 'models', 'localizers')
                for p in spec.submodule_search_locations]
    return importlib.machinery.PathFinder.find_spec('drn', dirs) is None


def patch_mmaction_drn():
    """Work around open-mmlab/mmaction2#2714.

    mmaction2 1.2.0's wheel (and sdist) lacks ``models/localizers/drn/`` but
    ``models/localizers/__init__.py`` runs ``from .drn.drn import DRN``, so
    ``import mmaction.models`` raises ``ModuleNotFoundError``. When it is
    missing, put stand-ins for ``mmaction.models.localizers.drn`` and
    ``...drn.drn`` in ``sys.modules``, whose ``DRN`` raises a clear
    ``RuntimeError`` when built (it is registered nowhere). Returns True when
    the stand-in is active.
    """
    if _DRN in sys.modules:
        return getattr(sys.modules[_DRN], '__evad_mm_stand_in__', False)
    if not _drn_missing():
        return False

    class DRN:
        """Stand-in for mmaction2's DRN localizer, absent from the wheel."""

        def __init__(self, *args, **kwargs):
            raise RuntimeError(DRN_MESSAGE)

    package = types.ModuleType(_DRN, 'Stand-in: ' + DRN_MESSAGE)
    package.__spec__ = importlib.machinery.ModuleSpec(_DRN, None,
                                                      is_package=True)
    package.__path__ = []
    module = types.ModuleType(_DRN + '.drn', 'Stand-in: ' + DRN_MESSAGE)
    module.__spec__ = importlib.machinery.ModuleSpec(_DRN + '.drn', None)
    DRN.__module__ = module.__name__
    for mod in (package, module):
        mod.DRN, mod.__all__, mod.__evad_mm_stand_in__ = DRN, ['DRN'], True
    package.drn = module
    sys.modules[_DRN + '.drn'] = module
    sys.modules[_DRN] = package
    return True


def _in1d(ar1, ar2, assume_unique=False, invert=False, *, kind=None):
    """``np.in1d`` as numpy < 2.4 had it: ``np.isin`` of flattened ``ar1``."""
    import numpy as np
    return np.isin(np.ravel(ar1), ar2, assume_unique=assume_unique,
                   invert=invert, kind=kind)


def patch_numpy_aliases():
    """Restore the numpy names mmaction2 1.2.0 uses that numpy 2 removed.

    numpy 2.0 removed ``np.NAN`` and ``np.Inf``, numpy 2.4 ``np.trapz`` and
    ``np.in1d``. mmaction2 uses ``np.NAN`` in its AVA evaluation
    (``ava_evaluation/metrics.py``: AVAMetric fails with ``module 'numpy' has
    no attribute 'NAN'`` when a labelled class has detections but no ground
    truth), ``np.Inf`` in ``pose_transforms.py`` and ``utils/misc.py``,
    ``np.trapz`` in ``evaluation/functional/accuracy.py`` and ``np.in1d`` in
    ``evaluation/metrics/multimodal_metric.py``. Only missing names are set;
    returns them.
    """
    import numpy as np
    aliases = {'NAN': np.nan, 'Inf': np.inf, 'in1d': _in1d,
               'trapz': getattr(np, 'trapezoid', None)}
    added = [n for n, v in aliases.items()
             if v is not None and not hasattr(np, n)]
    for name in added:
        setattr(np, name, aliases[name])
    return added


_HISTORY_STATISTICS = ('min', 'max', 'current', 'mean')
# dtypes of the numpy arrays and scalars in an mmengine checkpoint (message
# hub logs, metric values); plain fixed-width numbers only.
_NUMPY_DTYPES = ('bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16',
                 'uint32', 'uint64', 'float16', 'float32', 'float64')


def _history_buffer_getattr(obj, name):
    """Stands in for ``builtins.getattr`` during weights-only unpickling and
    only resolves ``HistoryBuffer.{min,max,current,mean}``, which
    ``HistoryBuffer.__getstate__`` saves as ``getattr(HistoryBuffer, 'min')``
    (pickle protocol 2). The real ``getattr`` would reach any attribute."""
    from mmengine.logging import HistoryBuffer
    if obj is HistoryBuffer and name in _HISTORY_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'getattr({obj!r}, {name!r}) is not allowed by evad_mm.compat')


def mmengine_checkpoint_safe_globals():
    """The ``torch.serialization.add_safe_globals`` allow-list: the types an
    mmengine 0.10.7 checkpoint holds beyond torch's defaults (dict, list,
    OrderedDict, Counter, tensors, ...)."""
    import numpy as np
    from mmengine.logging import HistoryBuffer
    if int(np.__version__.split('.')[0]) >= 2:
        from numpy._core import multiarray
    else:
        from numpy.core import multiarray
    allowed = [HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr'),
               np.ndarray, np.dtype]
    # numpy 1 pickles numpy.core.multiarray.*, numpy 2 numpy._core.*: accept
    # both names so checkpoints of either load under either.
    for func in (multiarray._reconstruct, multiarray.scalar):
        allowed += [(func, f'numpy.{core}.multiarray.{func.__name__}')
                    for core in ('core', '_core')]
    # numpy >= 1.20 gives each dtype its own class (numpy 2:
    # numpy.dtypes.Float64DType, ...) which unpickling builds.
    allowed += sorted({type(np.dtype(n)) for n in _NUMPY_DTYPES} - {np.dtype},
                      key=str)
    return allowed


def allow_mmengine_checkpoint_globals():
    """Work around open-mmlab/mmengine#1655 without unsafe unpickling.

    torch >= 2.6 ``torch.load`` defaults to ``weights_only=True``; mmengine
    0.10.7 calls it without the argument, so its own checkpoints (message hub
    ``HistoryBuffer`` with its statistics methods, numpy arrays, scalars,
    dtypes) fail with ``UnpicklingError: Weights only load failed``. This
    allow-lists exactly those with ``torch.serialization.add_safe_globals``
    (a set: adding twice is a no-op). Does nothing without mmengine or on a
    torch without ``add_safe_globals`` (< 2.4, which never restricts
    unpickling by default). Returns True when the allow-list is registered.
    """
    try:
        from torch import serialization
        allowed = mmengine_checkpoint_safe_globals()
    except ImportError:
        return False
    if not hasattr(serialization, 'add_safe_globals'):
        return False
    serialization.add_safe_globals(allowed)
    return True


def patch_mmengine_cpu_distributed():
    """Let ``--launcher pytorch`` train on machines without CUDA.

    mmengine 0.10.7's ``_init_dist_pytorch`` always calls
    ``torch.cuda.set_device`` ("Found no NVIDIA driver") and uses the
    configured backend (nccl by default), and its runner wraps the model in
    DDP with ``device_ids=[local_rank]``, which DDP refuses for a CPU module.
    Without CUDA, the process group is initialised with gloo and CPU modules
    are wrapped with ``device_ids=None``; with CUDA nothing changes.
    """
    import torch
    from mmengine.dist import utils as dist_utils
    from mmengine.model import MMDistributedDataParallel as DDP
    if getattr(dist_utils._init_dist_pytorch, '__evad_mm__', False):
        return True
    init_with_cuda = dist_utils._init_dist_pytorch

    def _init_dist_pytorch(backend, init_backend='torch', **kwargs):
        if torch.cuda.is_available() or init_backend != 'torch':
            return init_with_cuda(backend, init_backend=init_backend, **kwargs)
        torch.distributed.init_process_group(
            backend='gloo' if backend == 'nccl' else backend,
            rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']),
            **kwargs)

    _init_dist_pytorch.__evad_mm__ = True
    dist_utils._init_dist_pytorch = _init_dist_pytorch
    ddp_init = DDP.__init__

    def __init__(self, module, *args, device_ids=None, **kwargs):
        if all(p.device.type == 'cpu' for p in module.parameters()):
            device_ids = None
        ddp_init(self, module, *args, device_ids=device_ids, **kwargs)

    DDP.__init__ = __init__
    return True


def _tube_iou(tube_a, tube_b, spatialonly: bool = False,
              temporalonly: bool = False) -> float:
    """Spatio-temporal IoU of two tubes, (n, 5) arrays of rows ``frame, x1,
    y1, x2, y2`` sorted by frame: the temporal IoU of their frame spans times
    the mean per-frame box IoU over the shared span (mmaction2's
    ``iou3d_voc``), as mmaction2's ``iou3dt_voc`` defines it; written without
    ``int()`` of 1-element arrays, which numpy >= 2.4 refuses."""
    from mmaction.evaluation.functional import multisports_utils
    first = max(tube_a[0, 0], tube_b[0, 0])
    last = min(tube_a[-1, 0], tube_b[-1, 0])
    if last < first:
        return 0.0
    span = max(tube_a[-1, 0], tube_b[-1, 0]) - min(tube_a[0, 0], tube_b[0, 0])
    temporal = (last - first) / span if span > 0 else 1.0
    if temporalonly:
        return float(temporal)
    shared = [t[(t[:, 0] >= first) & (t[:, 0] <= last)]
              for t in (tube_a, tube_b)]
    spatial = multisports_utils.iou3d_voc(*shared)
    return float(spatial if spatialonly else spatial * temporal)


def patch_multisports_tube_iou():
    """Make mmaction2's MultiSports video-mAP work on numpy >= 2.4.

    mmaction2 1.2.0's ``multisports_utils.iou3dt_voc`` converts 1-element
    arrays with ``int()``, which numpy >= 2.4 refuses (``TypeError: only
    0-dimensional arrays can be converted``), so ``MultiSportsMetric``'s
    video-mAP fails. If the installed one fails on two plain tubes, it is
    replaced with :func:`_tube_iou`, which computes the same. Idempotent;
    returns True when the replacement is active. Does nothing without
    mmaction2.
    """
    import numpy as np
    try:
        from mmaction.evaluation.functional import multisports_utils
    except ImportError:
        return False
    if multisports_utils.iou3dt_voc is _tube_iou:
        return True
    tube = np.array([[1, 0, 0, 4, 4], [2, 0, 0, 4, 4]], np.float32)
    try:
        multisports_utils.iou3dt_voc(tube, tube)
        return False
    except TypeError:
        multisports_utils.iou3dt_voc = _tube_iou
        return True


def apply_all():
    """Apply every shim (idempotent); returns what each one did."""
    return dict(
        mmaction_drn=patch_mmaction_drn(),
        numpy_aliases=patch_numpy_aliases(),
        mmengine_checkpoint_globals=allow_mmengine_checkpoint_globals(),
        mmengine_cpu_distributed=patch_mmengine_cpu_distributed(),
        multisports_tube_iou=patch_multisports_tube_iou())


applied = apply_all()
