"""EVAD (Efficient Video Action Detection, ICCV 2023) for MMAction2.

Importing this package applies the compatibility shims of
:mod:`evad_mm.compat` and registers EVAD's modules in mmaction2's (and, for
RoI extractors and heads, mmdet's) registries, with the data transform and
the metric that the UCF101-24, JHMDB-21 and MultiSports configs use, and
the visualizer of the demos in mmaction2's ``VISUALIZERS``.
"""
from . import compat  # noqa: F401  (must run before mmaction is imported)
from .datasets import *  # noqa: F401,F403
from .engine import *  # noqa: F401,F403
from .evaluation import *  # noqa: F401,F403
from .models import *  # noqa: F401,F403
from .visualization import *  # noqa: F401,F403
from .version import __version__

__all__ = ['__version__']
