"""Type aliases used across evad_mm (the OpenMMLab convention)."""
from typing import List, Optional, Union

from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

ConfigType = Union[ConfigDict, dict]
OptConfigType = Optional[ConfigType]
MultiConfig = Union[ConfigType, List[ConfigType]]
OptMultiConfig = Optional[MultiConfig]
InstanceList = List[InstanceData]
