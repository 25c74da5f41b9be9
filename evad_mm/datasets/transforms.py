"""Per-video frame ranges for AVA-format data sets of rawframe folders."""
import os
from typing import Dict, Set, Tuple

from mmcv.transforms import BaseTransform

from evad_mm.registry import TRANSFORMS


def count_frame_files(names: Set[str], filename_tmpl: str,
                      first_index: int) -> int:
    """How many of ``filename_tmpl.format(i)`` for i = ``first_index``,
    ``first_index + 1``, ... are in ``names`` (a folder listing) before the
    first gap."""
    count = 0
    while filename_tmpl.format(first_index + count) in names:
        count += 1
    return count


@TRANSFORMS.register_module()
class RawFrameInit(BaseTransform):
    """Count the frame files of a video, as ``DecordInit`` counts the
    frames of a video file.

    mmaction2's ``AVADataset`` gives every rawframe video one frame range,
    ``fps * (timestamp_end - timestamp_start)`` frames, and
    ``SampleAVAFrames`` clamps clip indices to it. That fits AVA (every
    video is 15 minutes long) but not sets of short videos of different
    lengths (UCF101-24, JHMDB-21): near the end of a shorter video the clip
    asks for files that do not exist. This transform, placed before
    ``SampleAVAFrames``, sets

    - ``total_frames``: the number of frame files of this video, so that
      ``SampleAVAFrames`` clamps indices to ``[0, total_frames - 1]`` and
      repeats this video's own edge frames;
    - ``offset``: ``first_index``, which ``RawFrameDecode`` adds to every
      index, so 0-based index ``i`` reads
      ``filename_tmpl.format(i + first_index)``.

    Use it with the dataset settings of mmaction2's MultiSports configs,
    ``fps=1, timestamp_start=1, start_index=0``: the keyframe at timestamp
    ``t`` (a frame number counted from 1) is index ``t - 1``, file number
    ``t - 1 + first_index``, i.e. file ``t`` for files numbered from 1.

    Folders are listed once per process and the counts cached; frames must
    be numbered without gaps. Local disks only (``os.listdir``).

    Required keys: ``frame_dir``, ``filename_tmpl``, ``timestamp``,
    ``timestamp_start``, ``fps``, ``start_index``.

    Added keys: ``total_frames``, ``offset``.

    Args:
        first_index (int): Number of the first frame file of every video.
            Defaults to 1.
    """

    def __init__(self, first_index: int = 1) -> None:
        if not isinstance(first_index, int) or first_index < 0:
            raise ValueError(
                f'first_index must be an integer >= 0, got {first_index!r}: '
                'the number in the name of the first frame file')
        self.first_index = first_index
        self._counts: Dict[Tuple[str, str], int] = {}

    def count_frames(self, frame_dir: str, filename_tmpl: str) -> int:
        """Number of files ``filename_tmpl.format(i)`` in ``frame_dir`` for
        consecutive ``i`` from ``first_index``."""
        key = (frame_dir, filename_tmpl)
        if key not in self._counts:
            try:
                names = set(os.listdir(frame_dir))
            except OSError as err:
                raise FileNotFoundError(
                    f'RawFrameInit: cannot list the frame folder {frame_dir} '
                    f'({err}); frames must be in <data_prefix.img>/'
                    '<video_id>/ as named by filename_tmpl') from err
            self._counts[key] = count_frame_files(names, filename_tmpl,
                                                  self.first_index)
        return self._counts[key]

    def transform(self, results: Dict) -> Dict:
        """Set ``total_frames`` and ``offset`` of ``results['frame_dir']``.

        Raises:
            ValueError: if the dataset's ``start_index`` is not 0 (this
                transform numbers the files itself).
            FileNotFoundError: if the folder has no first frame file or
                fewer frames than the keyframe's number.
        """
        if results.get('start_index', 0) != 0:
            raise ValueError(
                f'RawFrameInit needs the dataset setting start_index=0, got '
                f'{results["start_index"]}: the file numbering is set by '
                f'RawFrameInit(first_index={self.first_index}) instead '
                '(otherwise every clip would be shifted by start_index)')
        frame_dir = results['frame_dir']
        tmpl = results['filename_tmpl']
        total = self.count_frames(frame_dir, tmpl)
        if total == 0:
            raise FileNotFoundError(
                f'RawFrameInit: no frame {tmpl.format(self.first_index)} in '
                f'{frame_dir}; set the dataset filename_tmpl and '
                'RawFrameInit(first_index=...) to how the frames are named')
        keyframe = results['fps'] * (results['timestamp'] -
                                     results['timestamp_start'])
        if not 0 <= keyframe < total:
            raise FileNotFoundError(
                f'RawFrameInit: keyframe {results["timestamp"]} of '
                f'{results.get("video_id", frame_dir)} is frame file '
                f'{tmpl.format(keyframe + self.first_index)}, but '
                f'{frame_dir} has {total} frames numbered from '
                f'{self.first_index}; are all frames extracted, and do the '
                'annotations belong to these frames?')
        results['total_frames'] = total
        results['offset'] = self.first_index
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(first_index={self.first_index})'
