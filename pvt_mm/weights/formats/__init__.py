"""The checkpoint layouts each family reads (official, timm, HF
transformers, mmdet, ours), one module per family.

A family's backbone class names its formats (``checkpoint_formats``);
:func:`pvt_mm.weights.load.convert_state_dict` tries only those and
fails when none or more than one matches. :data:`FAMILY_FORMATS` is a fixed
table, used to say which family a checkpoint of another family belongs to.
"""
from .cvt import FORMATS as CVT_FORMATS
from .pvt_v1 import FORMATS as PVTV1_FORMATS
from .pvt_v2 import FORMATS as PVTV2_FORMATS
from .rules import (CheckpointFormat, StateDict, merge_kv, rename_keys,
                    split_fused_qkv)

FAMILY_FORMATS = {'PVTv1': PVTV1_FORMATS, 'PVTv2': PVTV2_FORMATS,
                  'CvT': CVT_FORMATS}

__all__ = ['CheckpointFormat', 'StateDict', 'FAMILY_FORMATS', 'CVT_FORMATS',
           'PVTV1_FORMATS', 'PVTV2_FORMATS', 'merge_kv', 'rename_keys',
           'split_fused_qkv']
