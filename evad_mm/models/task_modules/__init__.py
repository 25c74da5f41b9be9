from .match_costs import SigmoidClassificationCost

__all__ = ['SigmoidClassificationCost']
