from .hybrid_patch_embed import HybridPatchEmbed
from .token_pruning import (gather_kept_tokens, keyframe_first_order,
                            keyframe_query_weights, num_kept_tokens,
                            select_non_keyframe_tokens)
from .transformer import Attention, TransformerBlock, resize_position_table

__all__ = [
    'HybridPatchEmbed', 'Attention', 'TransformerBlock', 'resize_position_table',
    'keyframe_first_order', 'keyframe_query_weights', 'num_kept_tokens',
    'select_non_keyframe_tokens', 'gather_kept_tokens'
]
