from .evad_vit import EVADBackboneOutput, EVADViT

__all__ = ['EVADViT', 'EVADBackboneOutput']
