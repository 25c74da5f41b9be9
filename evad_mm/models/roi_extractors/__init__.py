from .extended_roi_extractor_3d import ExtendedRoIExtractor3D, extend_rois
from .float32_roi_extraction import (Float32SingleRoIExtractor,
                                     extract_in_float32)

__all__ = [
    'ExtendedRoIExtractor3D', 'extend_rois', 'Float32SingleRoIExtractor',
    'extract_in_float32'
]
