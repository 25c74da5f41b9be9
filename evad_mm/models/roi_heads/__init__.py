from .actor_localization_head import ActorLocalizationHead
from .context_refinement_head import ContextRefinementHead

__all__ = ['ActorLocalizationHead', 'ContextRefinementHead']
