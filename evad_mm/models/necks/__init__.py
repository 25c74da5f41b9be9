from .keyframe_pyramid_neck import KeyframePyramidNeck

__all__ = ['KeyframePyramidNeck']
