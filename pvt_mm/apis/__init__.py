"""What users call after training: rendered predictions (:mod:`.inference`)
and the demo's pictures and curves (:mod:`.visualize`). Importing it
imports mmdet / mmseg; ``import pvt_mm`` does not import it."""
from .inference import build_inferencer, list_images, run_inference

__all__ = ['build_inferencer', 'list_images', 'run_inference']
