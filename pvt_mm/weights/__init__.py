"""Pretrained weights: reading files safely, the published checkpoint
layouts of each family, and strict loading.

- :mod:`pvt_mm.weights.io`: ``load_file`` (``weights_only=True``, with an
  error that says why torch refused a file and how to re-save it) and
  :class:`CheckpointError`;
- :mod:`pvt_mm.weights.formats`: one module per family with its layouts
  (official, timm, HF transformers, mmdet, ours), each a detector and a
  converter to our keys;
- :mod:`pvt_mm.weights.load`: unwrapping, layout detection, conversion
  and ``load_pretrained`` (what a backbone's ``init_cfg`` runs).

The models (:mod:`pvt_mm.models`), MMEngine integration
(:mod:`pvt_mm.engine`), deployment and the converter tool import it.
``pvt_mm.models.checkpoint`` and ``pvt_mm.models.formats``, where this
lived before, still give the same names.
"""
from .formats import FAMILY_FORMATS, CheckpointFormat, StateDict
from .io import TRUST_PICKLE_HINT, CheckpointError, load_file
from .load import (convert_state_dict, detect_format, find_state_dict,
                   load_pretrained, unwrap)

__all__ = ['CheckpointError', 'CheckpointFormat', 'FAMILY_FORMATS',
           'StateDict', 'TRUST_PICKLE_HINT', 'convert_state_dict',
           'detect_format', 'find_state_dict', 'load_file', 'load_pretrained',
           'unwrap']
