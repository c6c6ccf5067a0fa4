"""Whole-model ONNX export of pvt_mm detectors and segmentors: the
network-only layout (``pytorch2onnx.py --no-end2end``).

The default export is end to end (:mod:`pvt_mm.deploy.end2end`,
:func:`~pvt_mm.deploy.export_end2end`): image and original size in, final
predictions out, with the post-processing below rewritten in standard ONNX
operators. This module's layout keeps the post-processing in PyTorch; it
also serves the families without an end-to-end graph (query-based
detectors) and shares the model loading, metadata and checks.

What goes into the network-only graph (one input ``img``: the normalised, padded batch
the model's data preprocessor makes, dynamic batch / height / width):

* ``single_stage`` (RetinaNet, GFL, ATSS): backbone + neck + dense head,
  per-level raw outputs; then ``bbox_head.predict_by_feat`` in PyTorch
  (decoding, score threshold, NMS);
* ``two_stage`` (Mask R-CNN, Cascade Mask R-CNN): backbone + neck + RPN
  head, the FPN maps and per-level RPN outputs; then the RPN proposals
  (NMS) and the RoI heads (RoIAlign, box / mask heads) in PyTorch;
* ``query_based`` (Sparse R-CNN, DETR): backbone + neck, the FPN maps;
  then the query heads in PyTorch;
* ``segmentor`` (Semantic FPN): backbone + neck + decode head, logits at
  1/4 resolution; then resizing to the input, cropping the padding and
  the argmax (mmseg) in PyTorch.

NMS, RoIAlign and the data-dependent shapes of proposals stay in PyTorch:
mmdet's class-aware NMS with its score threshold and top-k only maps onto
ONNX's ``NonMaxSuppression`` after rewriting the heads' post-processing
(what MMDeploy's rewriters do), and multi-level RoIAlign needs custom ops
(MMDeploy's, built for ONNX Runtime 1.8); in PyTorch they are mmdet's own
code, so the results match by construction. The runner (:mod:`.ort_runner`) feeds ONNX
Runtime's outputs to the same mmdet / mmseg post-processing functions the
PyTorch model calls, so both return the same ``DetDataSample`` /
``SegDataSample`` structures.

The graph is recorded with torch's TorchScript exporter (``dynamo=False``);
while it traces, every pvt_mm layer takes its plain reference computation
(:func:`pvt_mm.execution.policy.plain_graph`), including the shape-generic
adaptive pooling of linear SRA and the position-embedding resize of PVTv1.
The file carries ``pvt_mm.*`` metadata (the config's fingerprint, the
output layout, the class names) that the runner checks.
"""
import contextlib
import functools
import json
import os
import os.path as osp
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checks import (CheckpointMismatchError, check_input_size,
                     check_state_dict, model_fingerprint)
# the metadata's names, importable from here as before
from .metadata import (FORMAT_VERSION, META_PREFIX,  # noqa: F401
                       common_metadata, file_sha256, write_metadata)

DEFAULT_OPSET = 17


class ExportError(ValueError):
    """A model or export setting the exporter does not support."""


# ---------------------------------------------------------------- models
def load_model(config, checkpoint: Optional[str] = None,
               cfg_options: Optional[dict] = None, device: str = 'cpu'):
    """Build ``config``'s model (a path or a loaded ``Config``) in its
    library's scope, load ``checkpoint`` strictly (raising
    :class:`CheckpointMismatchError` when it does not fit), set
    ``model.cfg`` / ``model.dataset_meta`` and return it in eval mode."""
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, init_default_scope

    from pvt_mm.engine.runner import init_scope, load_config
    cfg = (config if isinstance(config, Config)
           else load_config(config, cfg_options))
    scope = init_scope(cfg)
    init_default_scope(scope)
    model_cfg = cfg.model
    if checkpoint is None:  # random weights: no pretrained download either
        from pvt_mm.weights.preflight import without_pretrained
        model_cfg = without_pretrained(model_cfg)
    model = revert_sync_batchnorm(MODELS.build(model_cfg))
    model.cfg = cfg
    model.dataset_meta = _config_metainfo(cfg)
    if checkpoint is not None:
        import pvt_mm.engine  # noqa: F401 (MMEngine files load weights_only)
        from pvt_mm.engine import load_from_local
        from pvt_mm.weights.sources import local_file
        ckpt = load_from_local(local_file(checkpoint, key='load_from'),
                               map_location='cpu')
        state = ckpt.get('state_dict', ckpt)
        state = {k[7:] if k.startswith('module.') else k: v
                 for k, v in state.items()}
        check_state_dict(model, state, checkpoint, cfg.filename)
        model.load_state_dict(state, strict=True)
        meta = ckpt.get('meta', {}).get('dataset_meta')
        if meta:
            model.dataset_meta = {k.lower(): v for k, v in meta.items()}
    else:
        model.init_weights()
    return model.to(device).eval()


def _config_metainfo(cfg) -> Optional[dict]:
    """The test dataset's ``metainfo`` (class names, palette) if the config
    sets it."""
    for loader in ('test_dataloader', 'val_dataloader'):
        dataset = (cfg.get(loader) or {}).get('dataset') or {}
        if dataset.get('metainfo'):
            return {k.lower(): v for k, v in dict(dataset['metainfo']).items()}
    return None


def graph_kind(model: nn.Module) -> str:
    """Which part of ``model`` the ONNX graph holds (see the module
    docstring)."""
    try:
        from mmseg.models.segmentors import EncoderDecoder
        if isinstance(model, EncoderDecoder):
            return 'segmentor'
    except ImportError:  # pragma: no cover
        pass
    from mmdet.models.dense_heads import AnchorHead, AnchorFreeHead
    from mmdet.models.detectors import (DetectionTransformer,
                                        SingleStageDetector,
                                        TwoStageDetector)
    if isinstance(model, TwoStageDetector):
        rpn = getattr(model, 'rpn_head', None)
        return ('two_stage' if isinstance(rpn, (AnchorHead, AnchorFreeHead))
                else 'query_based')
    if isinstance(model, DetectionTransformer):
        return 'query_based'
    if isinstance(model, SingleStageDetector):
        return 'single_stage'
    raise ExportError(
        f'{type(model).__name__} is not a model pvt_mm exports: ONNX export '
        f'covers mmdet single-stage, two-stage and query-based detectors '
        f'and mmseg EncoderDecoder segmentors')


def min_input_size(model: nn.Module) -> int:
    """Smallest padded input side the model's backbone takes."""
    backbone = getattr(model, 'backbone', None)
    fn = getattr(backbone, 'min_input_size', None)
    return int(fn()) if fn is not None else 1


class ExportGraph(nn.Module):
    """The part of a detector / segmentor that goes into the ONNX graph, as a
    module of one input whose outputs are a flat tuple of NCHW tensors,
    grouped as :attr:`groups` (``(name, count)``) records."""

    def __init__(self, model: nn.Module, kind: Optional[str] = None):
        super().__init__()
        self.model = model
        self.kind = kind or graph_kind(model)
        self.groups: List[Tuple[str, int]] = []

    def grouped(self, img: torch.Tensor) -> List[Tuple[str, Sequence]]:
        m = self.model
        if self.kind == 'segmentor':
            return [('seg_logits', [m.decode_head(m.extract_feat(img))])]
        feats = m.extract_feat(img)
        if self.kind == 'single_stage':
            return [(f'bbox_head{i}', list(g))
                    for i, g in enumerate(m.bbox_head(feats))]
        groups = [('feat', list(feats))]
        if self.kind == 'two_stage':
            groups += [(f'rpn_head{i}', list(g))
                       for i, g in enumerate(m.rpn_head(feats))]
        return groups

    def forward(self, img: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        grouped = self.grouped(img)
        self.groups = [(name, len(ts)) for name, ts in grouped]
        return tuple(t for _, ts in grouped for t in ts)

    def output_names(self) -> List[str]:
        return [f'{name}_{i}' for name, n in self.groups for i in range(n)]


def _upsample_by_factor(module, x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=module.scale_factor,
                         mode=module.mode, align_corners=module.align_corners)


@contextlib.contextmanager
def traceable_upsampling(model: nn.Module):
    """While exporting, mmseg's ``Upsample`` modules (Semantic FPN's scale
    heads) resize by their factor instead of to ``int(side * factor)``.

    ``Upsample.forward`` computes the output size with Python ``int()``, so
    the tracer records the size of the export input as a constant and the
    graph gives wrong maps at every other size. ``F.interpolate`` with
    ``scale_factor`` gives the same size (floor) and, as PyTorch then maps
    coordinates with ``1 / scale_factor`` = input / output, the same values.
    """
    try:
        from mmseg.models.utils import Upsample
    except ImportError:  # pragma: no cover
        yield
        return
    patched = [m for m in model.modules()
               if isinstance(m, Upsample) and not m.size and m.scale_factor]
    for m in patched:
        m.forward = functools.partial(_upsample_by_factor, m)
    try:
        yield
    finally:
        for m in patched:
            del m.forward


#: Tolerance of :func:`verify_export` (docs/testing.md: two computations of
#: the same mathematics in fp32): per output, relative to its largest
#: magnitude, plus a floor relative to the largest of all outputs.
VERIFY_RTOL, VERIFY_ATOL_OF_MAX = 1e-4, 1e-5


def verify_export(model: nn.Module, path: str, shape: Sequence[int]) -> float:
    """Run the export in ONNX Runtime and the model in PyTorch on a random
    batch of ``shape`` = (B, 3, H, W); raise :class:`ExportError` if an
    output differs by more than the fp32 tolerance, else return the largest
    error as a fraction of the tolerance."""
    import numpy as np
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(path, options,
                                   providers=['CPUExecutionProvider'])
    img = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    graph = ExportGraph(model).eval()
    with torch.no_grad():
        expected = [t.float().cpu().numpy() for t in graph(img)]
    got = session.run(None, {'img': img.numpy()})
    scale = max(float(np.abs(e).max()) for e in expected)
    worst = 0.
    for name, e, g in zip(graph.output_names(), expected, got):
        if e.shape != g.shape:
            raise ExportError(f'{path}: output {name} has shape {g.shape} in '
                              f'ONNX Runtime and {e.shape} in PyTorch at '
                              f'input '
                              f'{tuple(shape)}')
        tol = VERIFY_RTOL * float(np.abs(e).max()) + VERIFY_ATOL_OF_MAX * scale
        err = float(np.abs(e - g).max())
        worst = max(worst, err / tol)
        if err > tol:
            raise ExportError(
                f'{path}: output {name} differs from PyTorch by {err:.3g} at '
                f'input {tuple(shape)} (tolerance {tol:.3g}); an op of the '
                f'model records a size of the export input as a constant or '
                f'has no faithful ONNX form')
    return worst


def trace_to_onnx(model: nn.Module, module: nn.Module, args: tuple, out: str,
                  input_names: Sequence[str], output_names: Sequence[str],
                  axes: Dict[str, Dict[int, str]], opset: int) -> None:
    """Record ``module(*args)`` (a part of ``model``, or ``model`` wrapped)
    into ``out`` with torch's TorchScript exporter, mmseg's upsampling made
    traceable (:func:`traceable_upsampling`)."""
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad(), \
            traceable_upsampling(model):
        # the tracer warns about every Python-side shape check it records
        warnings.simplefilter('ignore')
        torch.onnx.export(module, args, out, dynamo=False,
                          input_names=list(input_names),
                          output_names=list(output_names), dynamic_axes=axes,
                          opset_version=opset, do_constant_folding=True)


def export_onnx(model: nn.Module, out: str,
                shape: Sequence[int] = (800, 1333), opset: int = DEFAULT_OPSET,
                checkpoint: Optional[str] = None,
                verify: bool = True) -> Dict[str, str]:
    """Export ``model`` (from :func:`load_model`; ``model.cfg`` is its
    config) to ``out`` with dynamic batch, height and width, traced at a
    ``shape`` = (H, W) input; return the metadata written into the file.

    ``shape`` must be at least the backbone's minimum input and should be a
    multiple of the data preprocessor's padding divisor (what the model sees
    at test time); any other size then runs through the same graph. With
    ``verify`` the file is run once in ONNX Runtime at another size and
    batch (H + 32, W + 64, batch 2) against PyTorch
    (:func:`verify_export`)."""
    import onnx  # noqa: F401 (missing: fail before the long trace)

    kind = graph_kind(model)
    h, w = int(shape[0]), int(shape[-1])
    min_size = min_input_size(model)
    check_input_size((h, w), min_size, type(model).__name__)
    model.eval()
    graph = ExportGraph(model, kind).eval()
    dummy = torch.zeros(1, 3, h, w)
    with torch.no_grad():
        graph(dummy)  # records the output layout
    names = graph.output_names()
    axes = {'img': {0: 'batch', 2: 'height', 3: 'width'}}
    axes.update({n: {0: 'batch', 2: f'{n}_h', 3: f'{n}_w'} for n in names})
    trace_to_onnx(model, graph, (dummy, ), out, ['img'], names, axes, opset)
    meta = dict(common_metadata(model, kind, min_size, (h, w), checkpoint,
                                model_fingerprint(model.cfg)),
                groups=json.dumps(graph.groups))
    write_metadata(out, meta)
    if verify:
        verify_export(model, out, (2, 3, h + 32, w + 64))
    return meta


__all__ = ['ExportError', 'ExportGraph', 'CheckpointMismatchError',
           'export_onnx', 'graph_kind', 'load_model', 'min_input_size']
