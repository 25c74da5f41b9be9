from .actor_localization_head import ActorLocalizationHead
from .context_refinement_head import ContextRefinementHead
from .context_refinement_roi_head import ContextRefinementRoIHead

__all__ = [
    'ActorLocalizationHead', 'ContextRefinementHead',
    'ContextRefinementRoIHead'
]
