"""pvt_mm: PVTv1, PVTv2 and CvT backbones for OpenMMLab.

``import pvt_mm`` registers the backbones in the ``pvt_mm`` registry scope
and makes sure MMEngine resolves ``pvt_mm::`` base-config paths (the one
process-wide change it makes; docs/process_wide_changes.md lists every
such change, why, and how to turn it off). It needs torch, mmengine and
mmcv only (never mmdet, mmseg or mmpretrain).

Where torch, mmengine or mmcv is not installed (``pip install --no-deps
pvt_mm`` for the torch-free runtime, docs/deployment.md), ``import pvt_mm``
still works but gives the runtime only: :mod:`pvt_mm.runtime` runs
end-to-end ONNX files, and every model attribute (``pvt_mm.PVTv2``,
``pvt_mm.MODELS``, ...) raises an ``ImportError`` naming the missing
package. :data:`RUNTIME_ONLY` says which case this is.
"""
import pvt_mm_config_hook

from .version import __version__

#: What the models need; without one of them pvt_mm is runtime-only.
MODEL_DEPENDENCIES = ('torch', 'mmengine', 'mmcv')
_MODEL_NAMES = ('MODELS', 'PVTv1', 'PVTv2', 'CvT', 'FP32FocalLoss',
                'swap_backbone')

__all__ = ['MODELS', 'PVTv1', 'PVTv2', 'CvT', 'FP32FocalLoss', 'swap_backbone',
           '__version__']

try:
    from .losses import FP32FocalLoss  # registers it (mmdet only when built)
    from .models import CvT, PVTv1, PVTv2  # registers them
    from .registry import MODELS
    from .swap import swap_backbone
except ImportError as e:
    # only a missing dependency makes pvt_mm runtime-only; any other import
    # error is a bug and surfaces as is
    if e.name not in MODEL_DEPENDENCIES:
        raise
    RUNTIME_ONLY = True
    _MISSING = e
else:
    RUNTIME_ONLY = False
    _MISSING = None


def __getattr__(name):
    if RUNTIME_ONLY and name in _MODEL_NAMES:
        raise ImportError(
            f'pvt_mm.{name} needs {_MISSING.name}, which is not installed '
            f'here ({_MISSING}): this pvt_mm is the torch-free runtime only '
            f'(pvt_mm.runtime runs end-to-end ONNX files). For the models '
            f'install pvt_mm with its dependencies (torch, mmengine, mmcv; '
            f'docs/get_started.md)', name=_MISSING.name) from _MISSING
    raise AttributeError(f"module 'pvt_mm' has no attribute {name!r}")


# Normally already done at interpreter start-up by pvt_mm_config.pth; this
# covers interpreters without it (e.g. a source checkout on PYTHONPATH).
pvt_mm_config_hook.install_import_hook()
