"""Frames of a video file or of frames in memory, and clip sampling."""
import copy
import os
import os.path as osp
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

__all__ = [
    'VideoReadError', 'VideoFrames', 'load_video', 'default_keyframes',
    'clip_indices', 'nearest_keyframe'
]


class VideoReadError(RuntimeError):
    """A video that cannot be opened or decoded, or has no frames."""


class VideoFrames:
    """Random access to the RGB frames of a video file (decord) or of frames
    in memory, with the frame rate.

    Use :func:`load_video` to make one.
    """

    def __init__(self,
                 reader=None,
                 frames=None,
                 path: Optional[str] = None,
                 fps: Optional[float] = None) -> None:
        self._reader = reader
        self._frames = frames
        self.path = path
        self.fps = fps
        if reader is not None:
            self.num_frames = len(reader)
            first = self.get_batch([0])[0]
        else:
            self.num_frames = len(frames)
            first = frames[0]
        self.height, self.width = first.shape[:2]

    def __len__(self) -> int:
        return self.num_frames

    @property
    def name(self) -> str:
        return self.path or '<frames>'

    def get_batch(self, indices: Sequence[int]) -> np.ndarray:
        """Frames ``indices`` as a (k, H, W, 3) array (RGB)."""
        indices = [int(i) for i in indices]
        if any(i < 0 or i >= self.num_frames for i in indices):
            raise IndexError(f'frame indices {indices} out of range for '
                             f'{self.num_frames} frames of {self.name}')
        if self._reader is None:
            return np.stack([self._frames[i] for i in indices])
        try:
            batch = self._reader.get_batch(indices).asnumpy()
        except Exception as err:  # decord raises DECORDError/RuntimeError
            raise VideoReadError(
                f'Cannot decode frames {indices[0]}..{indices[-1]} of video '
                f'{self.path}: {_first_line(err)}') from err
        return batch


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def load_video(video, fps: Optional[float] = None) -> VideoFrames:
    """Open a video.

    Args:
        video (str | Path | np.ndarray | list[np.ndarray] | VideoFrames): A
            video file (read with decord), a (T, H, W, 3) array or a list of
            (H, W, 3) frames, RGB.
        fps (float, optional): Frame rate; by default the file's. Frames in
            memory have none unless given.

    Raises:
        FileNotFoundError: The file does not exist.
        VideoReadError: The file cannot be decoded or has no frames.
        ValueError: Frames in memory of the wrong shape, or none.
    """
    if isinstance(video, VideoFrames):
        if fps is not None:
            video = copy.copy(video)
            video.fps = float(fps)
        return video
    if isinstance(video, (str, Path)):
        path = os.fspath(video)
        if not osp.exists(path):
            raise FileNotFoundError(f'Video file not found: {path}')
        if not osp.isfile(path):
            raise VideoReadError(f'Not a video file: {path}')
        if osp.getsize(path) == 0:
            raise VideoReadError(f'Video file is empty (0 bytes): {path}')
        import decord
        try:
            reader = decord.VideoReader(path, num_threads=1)
        except Exception as err:
            raise VideoReadError(
                f'Cannot open video {path}: {_first_line(err)}') from err
        if len(reader) == 0:
            raise VideoReadError(f'Video has no frames: {path}')
        if fps is None:
            fps = float(reader.get_avg_fps())
            if not np.isfinite(fps) or fps <= 0:
                fps = None
        return VideoFrames(reader=reader, path=path, fps=fps)
    if isinstance(video, np.ndarray):
        if video.ndim != 4 or video.shape[-1] != 3:
            raise ValueError('A video array must be (T, H, W, 3) RGB, got '
                             f'shape {video.shape}')
        frames = video
    elif isinstance(video, (list, tuple)):
        frames = [np.asarray(f) for f in video]
        shapes = {f.shape for f in frames}
        if len(shapes) > 1 or any(len(s) != 3 or s[-1] != 3 for s in shapes):
            raise ValueError('Frames must all be (H, W, 3) RGB of one size, '
                             f'got shapes {sorted(shapes)}')
    else:
        raise TypeError('video must be a file name, a (T, H, W, 3) array or '
                        f'a list of (H, W, 3) frames, not '
                        f'{type(video).__name__}')
    if len(frames) == 0:
        raise ValueError('The video has no frames')
    return VideoFrames(frames=frames, fps=None if fps is None else float(fps))


def default_keyframes(num_frames: int,
                      predict_stepsize: int = 8,
                      start: int = 0,
                      end: Optional[int] = None) -> List[int]:
    """One keyframe in the middle of every ``predict_stepsize`` frames of
    [start, end): each frame is then at most ``predict_stepsize // 2`` frames
    from a keyframe, as in mmaction2's spatio-temporal demo."""
    if predict_stepsize < 1:
        raise ValueError(f'predict_stepsize must be >= 1: {predict_stepsize}')
    end = num_frames if end is None else min(end, num_frames)
    start = max(start, 0)
    if end <= start:
        return []
    keyframes = list(range(start + predict_stepsize // 2, end,
                           predict_stepsize))
    return keyframes or [(start + end - 1) // 2]


def clip_indices(keyframe: int, clip_len: int, frame_interval: int,
                 num_frames: int) -> np.ndarray:
    """The frames of the clip around ``keyframe``: mmaction2's
    ``SampleAVAFrames`` in test mode, clamped to [0, num_frames)."""
    start = keyframe - (clip_len // 2) * frame_interval
    end = keyframe + ((clip_len + 1) // 2) * frame_interval
    return np.clip(np.arange(start, end, frame_interval), 0, num_frames - 1)


def nearest_keyframe(frame_indices: Sequence[int],
                     keyframes: Sequence[int]) -> np.ndarray:
    """Position in ``keyframes`` (sorted) of the keyframe nearest to each
    frame; halfway frames go to the later keyframe, so that with
    :func:`default_keyframes` each keyframe covers its own
    ``predict_stepsize`` frames."""
    keyframes = np.asarray(keyframes)
    frame_indices = np.asarray(frame_indices)
    if len(keyframes) == 0:
        raise ValueError('nearest_keyframe needs at least one keyframe')
    if len(keyframes) == 1:
        return np.zeros(len(frame_indices), dtype=np.int64)
    pos = np.clip(np.searchsorted(keyframes, frame_indices), 1,
                  len(keyframes) - 1)
    left, right = keyframes[pos - 1], keyframes[pos]
    return np.where(frame_indices - left < right - frame_indices, pos - 1,
                    pos)
