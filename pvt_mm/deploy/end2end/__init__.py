"""End-to-end ONNX graphs: image batch in, final predictions out.

An end-to-end file needs nothing but an ONNX runtime to run: the data
preprocessor's normalisation and padding, the network, the box decoding,
class-aware NMS with the score threshold and top-k, the RoI stages
(multi-level RoIAlign, mask pasting) and the segmentation map's resize and
argmax are all in the graph, written with standard ONNX operators only
(``NonMaxSuppression``, ``RoiAlign``, ``TopK``, ``GridSample``, ``Resize``,
...), so ONNX Runtime, TensorRT and OpenVINO run it without custom ops.

The contract (every family, :data:`INPUTS` / :data:`OUTPUTS`):

inputs
    ``image``: ``(B, 3, H, W)``, ``uint8`` or ``float32`` (an export
    option), channels in the order the test pipeline loads them (BGR, as
    mmcv reads files), already resized by the test pipeline's ``Resize``
    (the runtime does that, like ``mmcv.imrescale``) but not padded: the
    graph pads to the data preprocessor's divisor itself.
    ``ori_shape``: ``(B, 2)`` ``int64``, each image's ``(height, width)``
    before the resize. Boxes, masks and label maps come out in those
    pixels, as mmdet's / mmseg's ``predict(..., rescale=True)`` gives them.
    All images of a batch have the same ``H, W`` and the same
    ``ori_shape`` (one resize for the whole batch).

detection outputs (``K`` = the model's ``test_cfg.max_per_img``, padded)
    ``dets`` ``(B, K, 4)`` float32 ``x1, y1, x2, y2``; ``scores`` ``(B, K)``
    float32; ``labels`` ``(B, K)`` int64; ``num_dets`` ``(B,)`` int64, the
    number of valid rows per image (rows past it: boxes and scores 0,
    label -1); instance segmentation adds ``masks`` ``(B, K, h, w)`` uint8
    (0 / 1) at ``ori_shape``.

segmentation outputs
    ``label_map`` ``(B, h, w)`` int64 at ``ori_shape``.

Each family's builder registers itself with :func:`register` for the graph
kinds of :func:`pvt_mm.deploy.onnx_export.graph_kind`; :func:`build_end2end`
wraps a loaded model (``pvt_mm.deploy.load_model``) in the module that is
traced.
"""
from typing import Callable, Dict

import torch.nn as nn

INPUTS = ('image', 'ori_shape')
DET_OUTPUTS = ('dets', 'scores', 'labels', 'num_dets')
MASK_OUTPUTS = DET_OUTPUTS + ('masks', )
SEG_OUTPUTS = ('label_map', )

#: graph kind -> builder(model) -> nn.Module
_BUILDERS: Dict[str, Callable[..., nn.Module]] = {}


def register(kind: str):
    """Decorator: ``builder(model)`` makes the end-to-end module of models
    of graph kind ``kind``."""
    def wrap(builder):
        _BUILDERS[kind] = builder
        return builder
    return wrap


#: the modules whose builders register themselves on import
FAMILY_MODULES = ('single_stage', 'two_stage', 'query_based', 'segmentor')


def _load_builders() -> None:
    import importlib
    for name in FAMILY_MODULES:
        try:
            importlib.import_module(f'{__name__}.{name}')
        except ModuleNotFoundError as e:
            # a family whose module is not there (yet) has no builder;
            # anything else missing is an error
            if e.name != f'{__name__}.{name}':
                raise


def build_end2end(model: nn.Module, **options) -> nn.Module:
    """The end-to-end module of ``model`` (forward(image, ori_shape) ->
    the outputs of the contract above); :class:`ExportError` names the
    model families that have one when ``model``'s has none."""
    from ..onnx_export import ExportError, graph_kind
    _load_builders()
    kind = graph_kind(model)
    if kind not in _BUILDERS:
        raise ExportError(
            f'{type(model).__name__} ({kind}) has no end-to-end export; '
            f'end-to-end graphs exist for {sorted(_BUILDERS)}. Export it with '
            f'--no-end2end (network in ONNX, post-processing in PyTorch)')
    if options:  # no builder takes any yet
        raise ExportError(f'the {kind} end-to-end graph takes no options, '
                          f'got {sorted(options)}')
    return _BUILDERS[kind](model)


__all__ = ['INPUTS', 'DET_OUTPUTS', 'MASK_OUTPUTS', 'SEG_OUTPUTS', 'register',
           'build_end2end']
