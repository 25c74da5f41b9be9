from .backbones import *  # noqa: F401,F403
from .detectors import *  # noqa: F401,F403
from .necks import *  # noqa: F401,F403
from .roi_extractors import *  # noqa: F401,F403
from .roi_heads import *  # noqa: F401,F403
from .task_modules import *  # noqa: F401,F403
