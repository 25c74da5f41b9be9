"""High-level inference: build an EVAD detector and run it on a video."""
from .inference import (KeyframeResult, RandomWeightsWarning, VideoFrames,
                        VideoReadError, default_keyframes, detect_video,
                        get_label_names, inference_pipeline, init_detector,
                        load_label_map, load_video)

__all__ = [
    'init_detector', 'detect_video', 'load_video', 'load_label_map',
    'get_label_names', 'inference_pipeline', 'default_keyframes',
    'KeyframeResult', 'VideoFrames', 'VideoReadError', 'RandomWeightsWarning'
]
