"""Decode heads the papers pair with our backbones that the OpenMMLab
libraries lack. They need MMSegmentation, so ``import pvt_mm`` does not
import them: a config that uses one lists ``pvt_mm.heads`` in
``custom_imports`` (configs/trans2seg_pvt_v1_small_ade20k_40k.py)."""
from .trans2seg import Trans2SegHead

__all__ = ['Trans2SegHead']
