"""Writing RGB frames to an mp4 file, checked by reading it back."""
import logging
import os
import os.path as osp
from typing import Optional, Tuple

import numpy as np
from mmengine.logging import print_log

__all__ = ['Mp4Writer']


class Mp4Writer:
    """``cv2.VideoWriter`` (mp4v) of RGB frames, opened at the first frame
    (with its size, in a folder made if needed).

    Use as a context manager, or call :meth:`close`, which checks that the
    file decodes back at the written size (:meth:`release` only finishes
    it, e.g. after an error).

    Args:
        path (str): The output file.
        fps (float): Its frame rate.

    Raises:
        RuntimeError: The file cannot be opened for writing, a frame has
            another size than the first, or the written file cannot be
            read back.
    """

    def __init__(self, path: str, fps: float) -> None:
        self.path = os.fspath(path)
        self.fps = float(fps)
        self.frames_written = 0
        self.size: Optional[Tuple[int, int]] = None  # (W, H)
        self._writer = None

    def write(self, frame: np.ndarray) -> None:
        """Append an (H, W, 3) uint8 RGB frame."""
        import cv2
        size = (frame.shape[1], frame.shape[0])
        if self._writer is None:
            os.makedirs(osp.dirname(osp.abspath(self.path)), exist_ok=True)
            self._writer = cv2.VideoWriter(
                self.path, cv2.VideoWriter_fourcc(*'mp4v'), self.fps, size)
            if not self._writer.isOpened():
                self._writer = None
                raise RuntimeError(
                    f'cannot open {self.path} for writing (mp4v)')
            self.size = size
        elif size != self.size:
            raise RuntimeError(f'a frame of {size[0]}x{size[1]} for '
                               f'{self.path}, whose frames are '
                               f'{self.size[0]}x{self.size[1]}')
        self._writer.write(np.ascontiguousarray(frame[..., ::-1]))
        self.frames_written += 1

    def release(self) -> None:
        """Finish the file without checking it (again: nothing)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def close(self) -> None:
        """Finish the file and check that it reads back (nothing to check
        if no frame was written)."""
        if self._writer is not None:
            self.release()
            self._check()

    def __enter__(self) -> 'Mp4Writer':
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()
        else:  # keep the original error
            self.release()

    def _check(self) -> None:
        import cv2
        if not osp.isfile(self.path) or osp.getsize(self.path) == 0:
            raise RuntimeError(f'cv2.VideoWriter wrote nothing to '
                               f'{self.path}')
        cap = cv2.VideoCapture(self.path)
        try:
            ok, frame = cap.read()
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        finally:
            cap.release()
        if not ok or frame is None:
            raise RuntimeError(f'{self.path} was written but cannot be read '
                               'back')
        if frame.shape[1::-1] != self.size:
            raise RuntimeError(f'{self.path} has frames of '
                               f'{frame.shape[1::-1]}, expected {self.size}')
        if count and count != self.frames_written:
            print_log(f'{self.path} reads back {count} frames, '
                      f'{self.frames_written} were written',
                      logger='current', level=logging.WARNING)
