"""Drawing EVAD's detections: boxes, action labels and scores."""
from .action_detection_visualizer import ActionDetectionVisualizer
from .live_window import LiveWindow, display_available

__all__ = ['ActionDetectionVisualizer', 'LiveWindow', 'display_available']
