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
    weights, activations quantized per call). Faster, and approximate:
    docs/benchmarks.md records its accuracy on the demo. Given calibration
    images (``calibration``: :func:`calibration_feeds`), the convolutions of
    the neck and heads become int8 too, with activation ranges measured on
    those images (``quantize_static``, QDQ); the backbone's stay fp32.

Every file keeps the portable file's ``pvt_mm.*`` metadata and adds
``pvt_mm.variant`` (and the attention kernel, optimization level, ONNX
Runtime version, quantization settings), so the runners accept it like the
portable one.
"""
import contextlib
import json
import os
import os.path as osp
import tempfile
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

from ..execution.sdpa import onnx_attention
from .metadata import META_PREFIX, read_props, write_props

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

#: What :func:`quantize_int8` quantizes unless told otherwise, chosen by
#: measurement (docs/benchmarks.md, "ONNX Runtime files"): the weights of
#: MatMuls with a constant weight (every linear layer; attention is one
#: fused operator and stays fp32), per output channel. Conv weights stay
#: fp32: ONNX Runtime runs dynamically quantized convolutions
#: (``ConvInteger``) ~4x slower than its fp32 ones (RetinaNet-PVTv2-B2
#: network 21 CPU-s against 5), and they cost 0.005 box mAP@50 on the
#: demo. Per channel and per tensor ran equally fast and kept the demo's
#: box mAP; per channel is the safer of the two for trained weights whose
#: output channels differ in scale. ``reduce_range`` (7-bit weights) is
#: for CPUs without VNNI, where ONNX Runtime's uint8 x int8 kernels can
#: saturate.
INT8_DEFAULTS = dict(op_types=('MatMul', ), per_channel=True,
                     reduce_range=False)


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


def _pvt_mm_props(src: str) -> Dict[str, str]:
    props = {k: v for k, v in read_props(src).items()
             if k.startswith(META_PREFIX)}
    if 'pvt_mm.model_sha256' not in props:
        raise ValueError(f'{src} has no pvt_mm metadata: optimize files '
                         f'written by pvt_mm.deploy')
    return props


def optimize_file(src: str, dst: str, level: str = 'extended') -> str:
    """Run ``src`` through ONNX Runtime's graph optimizer at ``level``
    (:data:`LEVELS`) and save the optimized graph as ``dst``, with ``src``'s
    ``pvt_mm.*`` metadata plus ``pvt_mm.ort_optimization`` and
    ``pvt_mm.ort_version``."""
    import onnxruntime as ort
    props = _pvt_mm_props(src)
    options = session_options(threads=1, level=level)
    options.optimized_model_filepath = dst
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    ort.InferenceSession(src, options, providers=['CPUExecutionProvider'])
    props.update({META_PREFIX + 'ort_optimization': level,
                  META_PREFIX + 'ort_version': ort.__version__})
    write_props(dst, props)
    return dst


def static_conv_nodes(path: str) -> List[str]:
    """The ``Conv`` and ``Relu`` nodes of the neck and heads (``/neck/...``,
    ``/bbox_head/...``, ``/decode_head/...``, ...) of an exported file: what
    :func:`quantize_int8` quantizes statically when given calibration
    images. The backbone's convolutions (patch embeddings, spatial
    reduction, the FFN's depthwise conv) stay fp32: quantized, their
    outputs would need dequantizing before LayerNorm / GELU (the GELU fusion
    breaks) and the whole model ran slower than with the neck and heads
    alone (docs/benchmarks.md)."""
    import onnx
    proto = onnx.load(path, load_external_data=False)
    names = []
    for node in proto.graph.node:
        part = node.name.split('/')[1] if node.name.startswith('/') else ''
        if node.op_type in ('Conv', 'Relu') and (
                part == 'neck' or part.endswith('_head')):
            names.append(node.name)
    return names


def calibration_batches(cfg, count: int, split: str = 'train') -> List[dict]:
    """The first ``count`` images of ``cfg``'s ``split`` (``'train'`` or
    ``'test'``) as raw batches of one, read with the test pipeline (what
    the exported file is fed at test time)."""
    import copy
    import itertools

    from mmengine.runner import Runner
    loader = copy.deepcopy(cfg.get('test_dataloader')
                           or cfg.get('val_dataloader'))
    if split == 'train':
        train = cfg.train_dataloader.dataset
        while 'dataset' in train:  # RepeatDataset & co
            train = train.dataset
        for key in ('data_root', 'ann_file', 'data_prefix'):
            if key in train:
                loader.dataset[key] = copy.deepcopy(train[key])
    elif split != 'test':
        raise ValueError(f"split {split!r}: 'train' or 'test'")
    loader.update(batch_size=1, num_workers=0, persistent_workers=False,
                  sampler=dict(type='DefaultSampler', shuffle=False))
    return list(itertools.islice(Runner.build_dataloader(loader), count))


def calibration_feeds(model, batches: Iterable[dict], end2end: bool = False,
                      input_dtype: str = 'uint8') -> List[Dict[str, object]]:
    """ONNX Runtime inputs for calibration from raw data batches (what a
    test dataloader yields): the preprocessed ``img`` for a network-only
    file, or the ``image`` (of ``input_dtype``) / ``ori_shape`` of the
    end-to-end contract (batch 1 or same-size images)."""
    import numpy as np
    import torch
    feeds = []
    for data in batches:
        if end2end:
            feeds.append({
                'image': np.stack([np.asarray(i.cpu()) for i in data[
                    'inputs']]).astype(input_dtype),
                'ori_shape': np.array([s.ori_shape for s in data[
                    'data_samples']], dtype=np.int64)})
        else:
            with torch.no_grad():
                img = model.data_preprocessor(data, False)['inputs']
            feeds.append({'img': img.float().cpu().numpy()})
    return feeds


def quantize_int8(src: str, dst: str,
                  op_types: Sequence[str] = INT8_DEFAULTS['op_types'],
                  per_channel: bool = INT8_DEFAULTS['per_channel'],
                  reduce_range: bool = INT8_DEFAULTS['reduce_range'],
                  exclude: Iterable[str] = (),
                  calibration: Optional[Sequence[dict]] = None) -> str:
    """Dynamic int8 quantization of ``src`` (ONNX Runtime's
    ``quantize_dynamic``): the weights of ``op_types`` nodes (MatMul with a
    constant weight, Gemm, Conv) become int8, per output channel with
    ``per_channel``; their inputs are quantized at run time (uint8, per
    tensor). Nodes named in ``exclude`` stay fp32.

    With ``calibration`` (ONNX Runtime input dicts,
    :func:`calibration_feeds`), the neck's and heads' convolutions
    (:func:`static_conv_nodes`) are first quantized statically
    (``quantize_static``, QDQ, int8 weights per channel, uint8 activations
    with min-max ranges from the calibration inputs): ONNX Runtime runs
    them as ``QLinearConv``.

    Writes ``dst`` with ``src``'s ``pvt_mm.*`` metadata and
    ``pvt_mm.quantization``."""
    props = _pvt_mm_props(src)
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    static_nodes = []
    with _scratch(osp.dirname(osp.abspath(dst))) as tmp:
        if calibration is not None:
            static_nodes = static_conv_nodes(src)
            static = osp.join(tmp, 'static.onnx')
            _quantize_convs(src, static, static_nodes, calibration,
                            reduce_range)
            src = static
        _quantize_dynamic(src, dst, op_types, per_channel, reduce_range,
                          exclude)
    props[META_PREFIX + 'quantization'] = json.dumps(dict(
        method='onnxruntime.quantization.quantize_dynamic',
        weights='int8', activations='uint8 (dynamic, per tensor)',
        op_types=list(op_types), per_channel=per_channel,
        reduce_range=reduce_range, excluded=sorted(exclude),
        static=dict(method='onnxruntime.quantization.quantize_static (QDQ, '
                    'min-max, weights int8 per channel, activations uint8)',
                    conv_relu_nodes=len(static_nodes),
                    calibration_inputs=len(calibration))
        if calibration is not None else None))
    write_props(dst, props)
    return dst


def _quantize_convs(src: str, dst: str, nodes: Sequence[str],
                    calibration: Sequence[dict], reduce_range: bool) -> None:
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader,
                                          QuantFormat, QuantType,
                                          quantize_static)

    class Feeds(CalibrationDataReader):
        def __init__(self):
            self.left = iter(calibration)

        def get_next(self):
            return next(self.left, None)

    if not len(calibration):
        raise ValueError('calibration: no inputs')
    quantize_static(
        src, dst, Feeds(), quant_format=QuantFormat.QDQ,
        op_types_to_quantize=['Conv', 'Relu'], nodes_to_quantize=list(nodes),
        per_channel=True, reduce_range=reduce_range,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        extra_options={'DefaultTensorType': onnx.TensorProto.FLOAT})


def _quantize_dynamic(src, dst, op_types, per_channel, reduce_range,
                      exclude) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    quantize_dynamic(
        src, dst, op_types_to_quantize=list(op_types),
        per_channel=per_channel, reduce_range=reduce_range,
        weight_type=QuantType.QInt8, nodes_to_exclude=list(exclude) or None,
        # outputs of contrib ops (MultiHeadAttention) have no inferred
        # type; in these graphs every float tensor is fp32
        extra_options={'DefaultTensorType': onnx.TensorProto.FLOAT,
                       'MatMulConstBOnly': True})


@contextlib.contextmanager
def _scratch(folder: str) -> Iterator[str]:
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix='.pvt_mm_ort_') as d:
        yield d


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
    with _scratch(osp.dirname(osp.abspath(out))) as tmp:
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
           'calibration_batches', 'calibration_feeds', 'export_ort_variants', 'optimize_file',
           'quantize_int8', 'read_props', 'session_options',
           'static_conv_nodes', 'variant_path', 'write_props']
