"""pvt_mm: PVTv1, PVTv2 and CvT backbones for OpenMMLab.

``import pvt_mm`` registers the backbones in the ``pvt_mm`` registry scope;
it needs torch, mmengine and mmcv only (never mmdet, mmseg or mmpretrain).
"""
from .registry import MODELS
from .version import __version__
from .models import CvT, PVTv1, PVTv2  # noqa: E402  (registers them)

__all__ = ['MODELS', 'PVTv1', 'PVTv2', 'CvT', '__version__']

import pvt_mm_config_hook  # noqa: E402

pvt_mm_config_hook.install_import_hook()
