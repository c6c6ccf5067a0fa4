"""Deployment: whole-model ONNX export and an ONNX Runtime runner that
returns the PyTorch model's result structures.

* :func:`load_model`: build a config's model and load its checkpoint
  strictly (:class:`CheckpointMismatchError` names what does not fit);
* :func:`export_end2end`: one end-to-end graph, image and original size
  in, final predictions out (NMS, RoI stages, rescaling in the graph,
  standard ONNX operators; :mod:`.end2end`), run by ONNX Runtime alone
  (:mod:`pvt_mm.runtime`);
* :func:`export_onnx`: the network only (raw head outputs), dynamic batch /
  height / width, with ``pvt_mm.*`` metadata (config fingerprint, output
  layout, class names);
* :class:`ORTModel`: ``test_step`` / ``predict`` like the PyTorch model,
  with the network-only export run by ONNX Runtime.

Command-line: ``tools/deployment/pytorch2onnx.py`` (export) and
``tools/misc/infer.py --onnx`` (run it and render the predictions);
docs/deployment.md says what is in the graph and why MMDeploy is not used.
Importing this package imports mmdet (and mmseg when present), never at
``import pvt_mm``.
"""
from .checks import (CheckpointMismatchError, ExportMismatchError,
                     InputSizeError, check_input_size, check_state_dict,
                     model_fingerprint)
from .end2end import build_end2end
from .end2end.export import export_end2end
from .onnx_export import (ExportError, ExportGraph, export_onnx, graph_kind,
                          load_model, min_input_size)
from .ort_runner import ORTModel, read_metadata

__all__ = [
    'CheckpointMismatchError', 'ExportError', 'ExportGraph',
    'ExportMismatchError', 'InputSizeError', 'ORTModel', 'build_end2end',
    'check_input_size', 'check_state_dict', 'export_end2end', 'export_onnx',
    'graph_kind', 'load_model', 'min_input_size', 'model_fingerprint',
    'read_metadata'
]
