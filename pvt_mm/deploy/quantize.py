"""int8 ONNX Runtime files (the ``'int8'`` variant of
:mod:`pvt_mm.deploy.optimize`): ONNX Runtime's dynamic quantization of the
MatMul weights, and with calibration images static quantization of the
neck's and heads' convolutions."""
import contextlib
import json
import os
import os.path as osp
import tempfile
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

from .metadata import META_PREFIX, pvt_mm_props, write_props

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
    props = pvt_mm_props(src)
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    static_nodes = []
    with scratch_dir(osp.dirname(osp.abspath(dst))) as tmp:
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
def scratch_dir(folder: str) -> Iterator[str]:
    """A temporary folder inside ``folder`` (same file system as the
    results), removed afterwards."""
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix='.pvt_mm_ort_') as d:
        yield d
