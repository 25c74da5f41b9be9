from .transforms import RawFrameInit

__all__ = ['RawFrameInit']
