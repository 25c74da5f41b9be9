"""EVAD (Efficient Video Action Detection, ICCV 2023) for MMAction2.

Importing this package applies the compatibility shims of
:mod:`evad_mm.compat` and registers EVAD's modules in mmaction2's (and, for
RoI extractors and heads, mmdet's) registries.
"""
from . import compat  # noqa: F401  (must run before mmaction is imported)
from .engine import *  # noqa: F401,F403
from .models import *  # noqa: F401,F403
from .version import __version__

__all__ = ['__version__']
