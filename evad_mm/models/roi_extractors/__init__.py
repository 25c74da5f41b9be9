from .extended_roi_extractor_3d import ExtendedRoIExtractor3D, extend_rois

__all__ = ['ExtendedRoIExtractor3D', 'extend_rois']
