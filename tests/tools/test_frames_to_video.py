"""tools/data/frames_to_video.py: a folder of frames joined into an mp4 that
the video reader of the demos reads back frame for frame."""
import cv2
import numpy as np

from tests.conftest import load_tool, moving_square_clip

tool = load_tool('data', 'frames_to_video')


def write_frames(folder, clip):
    folder.mkdir()
    for i, frame in enumerate(clip):  # 1-based, as mmaction2's rawframes
        cv2.imwrite(str(folder / f'img_{i + 1:05d}.jpg'), frame[..., ::-1],
                    [cv2.IMWRITE_JPEG_QUALITY, 100])


def test_frames_in_name_order(tmp_path, capsys):
    from evad_mm.apis import load_video
    clip = moving_square_clip(12, (48, 64), slice(8, 40), 0, 16, 4)
    write_frames(tmp_path / 'frames', clip)
    out = tmp_path / 'clip.mp4'
    assert tool.main([str(tmp_path / 'frames'), str(out), '--fps', '5']) == 0
    assert 'wrote' in capsys.readouterr().out
    video = load_video(str(out))
    assert len(video) == 12 and video.fps == 5
    frames = video.get_batch(list(range(12)))
    assert frames.shape == clip.shape
    # the moving square is where it was in each frame (mp4v is lossy)
    columns = frames[:, 24].astype(int).sum(-1)
    assert (np.argmax(columns > 400, axis=1) == 4 * np.arange(12)).all()


def test_errors(tmp_path, capsys):
    (tmp_path / 'empty').mkdir()
    assert tool.main([str(tmp_path / 'empty'), str(tmp_path / 'a.mp4')]) == 1
    assert 'no frame matches' in capsys.readouterr().err
    clip = moving_square_clip(2, (48, 64), slice(8, 40), 0, 16, 4)
    write_frames(tmp_path / 'mixed', clip)
    cv2.imwrite(str(tmp_path / 'mixed' / 'img_00003.jpg'),
                np.zeros((32, 32, 3), np.uint8))
    assert tool.main([str(tmp_path / 'mixed'), str(tmp_path / 'b.mp4')]) == 1
    assert 'a frame of 32x32' in capsys.readouterr().err
