from .base import FeatureSpec, PyramidBackbone
from pvt_mm.weights import CheckpointError, load_pretrained
from .cvt import CvT
from .pvt_v1 import PVTv1
from .pvt_v2 import PVTv2

__all__ = ['FeatureSpec', 'PyramidBackbone', 'PVTv1', 'PVTv2', 'CvT', 'CheckpointError',
           'load_pretrained']
