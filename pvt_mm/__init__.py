"""pvt_mm: PVTv1, PVTv2 and CvT backbones for OpenMMLab.

``import pvt_mm`` registers the backbones in the ``pvt_mm`` registry scope
and makes sure MMEngine resolves ``pvt_mm::`` base-config paths (the one
process-wide change it makes; docs/process_wide_changes.md lists every
such change, why, and how to turn it off). It needs torch, mmengine and
mmcv only (never mmdet, mmseg or mmpretrain).
"""
import pvt_mm_config_hook

from .losses import FP32FocalLoss  # registers it (mmdet only when built)
from .models import CvT, PVTv1, PVTv2  # registers them
from .registry import MODELS
from .swap import swap_backbone
from .version import __version__

__all__ = ['MODELS', 'PVTv1', 'PVTv2', 'CvT', 'FP32FocalLoss', 'swap_backbone',
           '__version__']

# Normally already done at interpreter start-up by pvt_mm_config.pth; this
# covers interpreters without it (e.g. a source checkout on PYTHONPATH).
pvt_mm_config_hook.install_import_hook()
