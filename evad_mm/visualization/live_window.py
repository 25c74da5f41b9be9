"""A window for live frames that reports the keys pressed."""
import logging
import os
import sys

import numpy as np
from mmengine.logging import print_log

__all__ = ['LiveWindow', 'display_available']


def display_available() -> bool:
    """Whether a window can open (on Linux: an X11 or Wayland display)."""
    if sys.platform.startswith('linux'):
        return bool(os.environ.get('DISPLAY')
                    or os.environ.get('WAYLAND_DISPLAY'))
    return True


class LiveWindow:
    """``cv2.imshow`` of RGB frames that returns the key pressed, and turns
    itself off (with one warning) if OpenCV was built without a GUI.

    mmengine's ``Visualizer.show`` waits for a key per image and does not
    return it; a live run needs both a non-blocking poll and the key.

    Args:
        title (str): The window title.
    """

    def __init__(self, title: str) -> None:
        self.title = title
        self.enabled = True

    def __call__(self, frame: np.ndarray) -> int:
        """Show an (H, W, 3) RGB frame; the key pressed (0-255), -1 for
        none."""
        import cv2
        if not self.enabled:
            return -1
        try:
            cv2.imshow(self.title, np.ascontiguousarray(frame[..., ::-1]))
            key = cv2.waitKey(1)
            return -1 if key < 0 else key & 0xFF
        except cv2.error as err:
            self.enabled = False
            print_log(f'cannot show frames ({str(err).strip()}); continuing '
                      'without a window', logger='current',
                      level=logging.WARNING)
            return -1

    def close(self) -> None:
        if self.enabled:
            import cv2
            try:
                cv2.destroyWindow(self.title)
            except cv2.error:
                pass
