"""Pretrained weights: reading files safely, the published checkpoint
layouts of each family, and strict loading.

- :mod:`pvt_mm.weights.io`: ``load_file`` (``weights_only=True``, with an
  error that says why torch refused a file and how to re-save it;
  safetensors too) and :class:`CheckpointError`;
- :mod:`pvt_mm.weights.sources`: local files and URLs (downloaded once
  into torch hub's cache, checked, optionally against a ``sha256``);
- :mod:`pvt_mm.weights.preflight`: every checkpoint a config names,
  checked (and fetched) before a run builds anything;
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
from .io import (TRUST_PICKLE_HINT, CheckpointError, CorruptCheckpointError,
                 load_file)
from .load import (convert_state_dict, detect_format, find_state_dict,
                   load_pretrained, read_checkpoint, unwrap)
from .preflight import check_weight_sources, weight_sources
from .sources import CheckpointDownloadError, cache_dir, cache_path, fetch

__all__ = ['CheckpointDownloadError', 'CheckpointError', 'CheckpointFormat',
           'CorruptCheckpointError', 'FAMILY_FORMATS', 'StateDict',
           'TRUST_PICKLE_HINT', 'cache_dir', 'cache_path',
           'check_weight_sources', 'convert_state_dict', 'detect_format',
           'fetch', 'find_state_dict', 'load_file', 'load_pretrained',
           'read_checkpoint', 'unwrap', 'weight_sources']
