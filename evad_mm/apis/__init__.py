"""High-level inference: build an EVAD detector and run it on a video, an
array of frames or a live stream."""
from .inference import RandomWeightsWarning, init_detector, is_exported_model
from .inferencer import EVADInferencer, default_actor_thr, detect_video
from .keyframe_result import KeyframeResult
from .labels import get_label_names, load_label_map
from .pipeline import inference_pipeline
from .stream import (BoundedFrameQueue, FrameReader, StreamStats, open_capture,
                     parse_source, process_stream)
from .video import (VideoFrames, VideoReadError, clip_indices,
                    default_keyframes, load_video, nearest_keyframe)
from .video_writer import Mp4Writer

__all__ = [
    'init_detector', 'is_exported_model', 'EVADInferencer', 'detect_video',
    'default_actor_thr', 'load_video', 'load_label_map', 'get_label_names',
    'inference_pipeline', 'default_keyframes', 'clip_indices',
    'nearest_keyframe', 'KeyframeResult', 'VideoFrames', 'VideoReadError',
    'RandomWeightsWarning', 'Mp4Writer', 'BoundedFrameQueue', 'FrameReader',
    'StreamStats', 'open_capture', 'parse_source', 'process_stream'
]
