"""ONNX Runtime files beside the portable export: fused attention with ONNX
Runtime's graph optimizations applied, and dynamic int8 quantization.

The portable file (``model.onnx``, :func:`~pvt_mm.deploy.export_onnx` or
:func:`~pvt_mm.deploy.end2end.export.export_end2end`) holds standard ONNX
operators only. :func:`export_ort_variants` writes, next to it:

``model.ort.onnx`` (``'fused'``)
    the same model exported with every attention as one
    ``com.microsoft::MultiHeadAttention``
    (:func:`pvt_mm.execution.sdpa.onnx_attention`), then run through ONNX
    Runtime's graph optimizer (:func:`optimize_file`: constant folding,
    fusions of convolution + activation, GELU, LayerNorm, MatMul + bias ...)
    and saved as optimized. It needs ONNX Runtime (contrib operators) and
    gives the portable file's outputs within the fp32 tolerance.
``model.int8.onnx`` (``'int8'``)
    the fused file with the weights of its MatMuls in int8
    (:func:`quantize_int8`, ONNX Runtime's ``quantize_dynamic``: int8
    weights, activations quantized per call; :mod:`.quantize`). Faster,
    and approximate: docs/benchmarks.md records its accuracy on the demo.
    Given calibration
    images (``calibration``: :func:`calibration_feeds`), the convolutions of
    the neck and heads become int8 too, with activation ranges measured on
    those images (``quantize_static``, QDQ); the backbone's stay fp32.

Every file keeps the portable file's ``pvt_mm.*`` metadata and adds
``pvt_mm.variant`` (and the attention kernel, optimization level, ONNX
Runtime version, quantization settings), so the runners accept it like the
portable one.
"""
import os
import os.path as osp
from typing import Dict, Optional, Sequence

from ..execution.sdpa import onnx_attention
from .metadata import (META_PREFIX, pvt_mm_props,  # noqa: F401
                       read_props, write_props)
# int8 (its names importable from here as before)
from .quantize import (INT8_DEFAULTS, calibration_batches,  # noqa: F401
                       calibration_feeds, quantize_int8, scratch_dir,
                       static_conv_nodes)

#: variant -> file name suffix replacing ``.onnx``
SUFFIXES = {'plain': '.onnx', 'fused': '.ort.onnx', 'int8': '.int8.onnx'}
VARIANTS = tuple(SUFFIXES)

#: ONNX Runtime's optimization levels by name. ``'extended'`` is what
#: :func:`optimize_file` saves by default: every fusion that does not
#: depend on the CPU. ``'all'`` adds the layout transformation to blocked
#: NCHWc convolutions, whose block size is the CPU's vector width: ONNX
#: Runtime warns that such a file belongs to the machine it was made on.
#: A session applies ``'all'`` when it loads either file (its default), so
#: they run equally fast.
LEVELS = ('basic', 'extended', 'all')

def variant_path(path: str, variant: str) -> str:
    """``model.onnx`` -> ``model.ort.onnx`` / ``model.int8.onnx``."""
    if variant not in SUFFIXES:
        raise ValueError(f'variant {variant!r}: choose one of {VARIANTS}')
    base = path[:-len('.onnx')] if path.endswith('.onnx') else path
    for suffix in ('.ort', '.int8'):
        if base.endswith(suffix):
            base = base[:-len(suffix)]
    return base + SUFFIXES[variant]


def _level(name: str):
    import onnxruntime as ort
    levels = {'basic': ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              'extended': ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              'all': ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    if name not in levels:
        raise ValueError(f'optimization level {name!r}: choose one of '
                         f'{LEVELS}')
    return levels[name]


def session_options(threads: Optional[int] = None, level: str = 'all'):
    """ONNX Runtime's session options as pvt_mm's runners set them:
    ``threads`` intra-op threads (default: torch's setting), one inter-op
    thread, graph optimization ``level``."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    if threads is None:
        import torch
        threads = torch.get_num_threads()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = _level(level)
    return options


def optimize_file(src: str, dst: str, level: str = 'extended') -> str:
    """Run ``src`` through ONNX Runtime's graph optimizer at ``level``
    (:data:`LEVELS`) and save the optimized graph as ``dst``, with ``src``'s
    ``pvt_mm.*`` metadata plus ``pvt_mm.ort_optimization`` and
    ``pvt_mm.ort_version``."""
    import onnxruntime as ort
    props = pvt_mm_props(src)
    options = session_options(threads=1, level=level)
    options.optimized_model_filepath = dst
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    ort.InferenceSession(src, options, providers=['CPUExecutionProvider'])
    props.update({META_PREFIX + 'ort_optimization': level,
                  META_PREFIX + 'ort_version': ort.__version__})
    write_props(dst, props)
    return dst


def export_ort_variants(model, out: str,
                        variants: Sequence[str] = ('fused', 'int8'),
                        end2end: bool = False, level: str = 'extended',
                        int8_options: Optional[dict] = None,
                        **export_kwargs) -> Dict[str, str]:
    """Write the ONNX Runtime files of ``model`` next to the portable file
    ``out`` (which this does not write: :func:`~pvt_mm.deploy.export_onnx`
    or ``export_end2end`` do): ``'fused'`` -> ``model.ort.onnx``,
    ``'int8'`` -> ``model.int8.onnx`` (:func:`variant_path`); return
    ``{variant: path}``.

    The model is exported once more with fused attention
    (:func:`pvt_mm.execution.sdpa.onnx_attention`) by the same exporter
    (``end2end`` picks ``export_end2end``) and its arguments
    (``export_kwargs``: ``shape``, ``checkpoint``, ``verify``, ...), so the
    exporter's own check against PyTorch covers the fused graph too; the
    fused file is then optimized (:func:`optimize_file` at ``level``) and /
    or quantized (:func:`quantize_int8` with ``int8_options``), each with
    the variant recorded in ``pvt_mm.variant``."""
    bad = set(variants) - {'fused', 'int8'}
    if bad:
        raise ValueError(f'variants {sorted(bad)}: choose from fused, int8')
    if end2end:
        from .end2end.export import export_end2end as exporter
    else:
        from .onnx_export import export_onnx as exporter
    written = {}
    with scratch_dir(osp.dirname(osp.abspath(out))) as tmp:
        fused = osp.join(tmp, 'fused.onnx')
        with onnx_attention('ms_mha'):
            exporter(model, fused, **export_kwargs)
        write_props(fused, {META_PREFIX + 'attention': 'ms_mha'})
        if 'fused' in variants:
            path = variant_path(out, 'fused')
            optimize_file(fused, path, level=level)
            write_props(path, {META_PREFIX + 'variant': 'fused'})
            written['fused'] = path
        if 'int8' in variants:
            path = variant_path(out, 'int8')
            quantize_int8(fused, path, **(int8_options or {}))
            write_props(path, {META_PREFIX + 'variant': 'int8'})
            written['int8'] = path
    return written


__all__ = ['INT8_DEFAULTS', 'LEVELS', 'SUFFIXES', 'VARIANTS',
           'calibration_batches', 'calibration_feeds', 'export_ort_variants',
           'optimize_file', 'quantize_int8', 'read_props', 'session_options',
           'static_conv_nodes', 'variant_path', 'write_props']
