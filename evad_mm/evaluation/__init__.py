from .multisports_metric import AVAStyleMultiSportsMetric

__all__ = ['AVAStyleMultiSportsMetric']
