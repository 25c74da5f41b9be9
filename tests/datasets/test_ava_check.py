"""The probe sampler of ``evad_mm.datasets.ava_check`` against mmaction2's
``SampleAVAFrames``: it must name exactly the frames the real sampler can
draw, and flag exactly the clips it clamps."""
import numpy as np
import pytest
from mmaction.datasets.transforms import SampleAVAFrames

from evad_mm.datasets.ava_check import SampleEveryAVAFrame, probe_pipeline

FPS, T0, T1 = 10, 900, 906


def _results(timestamp, total_frames=None, start_index=1):
    return dict(fps=FPS,
                timestamp=timestamp,
                timestamp_start=T0,
                start_index=start_index,
                shot_info=(0, FPS * (T1 - T0)),
                total_frames=total_frames)


@pytest.mark.parametrize('clip_len,interval,test_mode,timestamp,total',
                         [(8, 2, False, 901, None), (8, 2, True, 903, None),
                          (16, 4, False, 905, None), (16, 4, True, 901, None),
                          (5, 3, False, 902, None), (4, 1, False, 906, None),
                          (16, 4, False, 902, 25), (8, 3, True, 901, 12)])
def test_probe_names_every_frame_the_sampler_draws(clip_len, interval,
                                                   test_mode, timestamp,
                                                   total):
    sampler = SampleAVAFrames(clip_len, interval, test_mode=test_mode)
    results = _results(timestamp, total)
    unbounded = dict(results, total_frames=None, shot_info=(-10**6, 10**6))
    seen, clamped = set(), False
    for seed in range(200):
        np.random.seed(seed)
        drawn = sampler.transform(dict(results))['frame_inds']
        np.random.seed(seed)
        free = sampler.transform(dict(unbounded))['frame_inds']
        seen.update(drawn.tolist())
        clamped |= not np.array_equal(drawn, free)
    probe = SampleEveryAVAFrame(clip_len, interval, test_mode=test_mode)
    out = probe.transform(dict(results))
    assert out['frame_inds'].tolist() == sorted(seen)
    assert out['clip_padded'] == clamped


def test_probe_pipeline_keeps_the_frame_steps_only():
    steps = probe_pipeline([
        dict(type='RawFrameInit', first_index=1),
        dict(type='SampleAVAFrames', clip_len=16, frame_interval=4),
        dict(type='RawFrameDecode'),
        dict(type='Resize', scale=(1333, 256), keep_ratio=True)
    ])
    assert [type(s).__name__
            for s in steps] == ['RawFrameInit', 'SampleEveryAVAFrame']
    assert (steps[0].first_index, steps[1].clip_len,
            steps[1].frame_interval) == (1, 16, 4)
    # without a sampler only the keyframe itself
    (only, ) = probe_pipeline([dict(type='RawFrameDecode')])
    out = only.transform(_results(902))
    assert out['frame_inds'].tolist() == [FPS * 2 + 1 + 1]
