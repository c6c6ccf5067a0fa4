"""The ``pvt_mm.*`` metadata of an exported ONNX file: what every export
carries (:func:`common_metadata`) and reading / writing ``metadata_props``
(:func:`read_props`, :func:`write_props`), for the network-only and
end-to-end exports and for the ONNX Runtime variants."""
import hashlib
import json
import os.path as osp
from typing import Dict, Optional, Sequence

import torch.nn as nn

#: the metadata layout (``pvt_mm.format_version``; pvt_mm.runtime reads it)
FORMAT_VERSION = '1'
META_PREFIX = 'pvt_mm.'


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def common_metadata(model: nn.Module, kind: str, min_size: int,
                    shape: Sequence[int], checkpoint: Optional[str],
                    fingerprint: str) -> Dict[str, str]:
    """The ``pvt_mm.*`` metadata every export carries (without the
    prefix): format, config and its fingerprint, graph kind, minimum and
    traced input size, dataset meta, checkpoint and its hash."""
    cfg = model.cfg
    return {
        'format_version': FORMAT_VERSION,
        'config': osp.basename(cfg.filename or ''),
        'model_sha256': fingerprint,
        'kind': kind,
        # the model family (its class: RetinaNet, MaskRCNN, EncoderDecoder,
        # ...), which the runtime's precision='auto' looks up
        'architecture': type(model).__name__,
        'min_size': str(min_size),
        'export_shape': f'{int(shape[0])}x{int(shape[-1])}',
        'dataset_meta': json.dumps(_json_safe(
            getattr(model, 'dataset_meta', None) or {})),
        'checkpoint': osp.basename(checkpoint) if checkpoint else '',
        'checkpoint_sha256': file_sha256(checkpoint) if checkpoint else '',
    }


def write_metadata(path: str, meta: Dict[str, str]) -> None:
    """Add ``meta`` to a fresh export as ``pvt_mm.``-prefixed
    ``metadata_props``, check the model and save it."""
    write_props(path, {META_PREFIX + k: v for k, v in meta.items()},
                check=True)


def read_props(path: str) -> Dict[str, str]:
    """All ``metadata_props`` of an ONNX file (weights not loaded)."""
    import onnx
    return {p.key: p.value
            for p in onnx.load(path, load_external_data=False).metadata_props}


def write_props(path: str, props: Dict[str, str],
                producer: Optional[str] = 'pvt_mm',
                check: bool = False) -> None:
    """Set ``props`` in the file's ``metadata_props`` (replacing keys that
    are there). Drops ``value_info`` records without an element type: the
    quantizer's shape inference writes them for the outputs of contrib
    operators it does not know, and ONNX Runtime refuses to load a file
    with them ("Invalid tensor data type 0"); it infers those types
    itself. ``check``: run ONNX's checker first."""
    import onnx
    proto = onnx.load(path)
    typed = [v for v in proto.graph.value_info
             if v.type.tensor_type.elem_type != 0
             or not v.type.HasField('tensor_type')]
    if len(typed) != len(proto.graph.value_info):
        del proto.graph.value_info[:]
        proto.graph.value_info.extend(typed)
    kept = [(p.key, p.value) for p in proto.metadata_props
            if p.key not in props]
    del proto.metadata_props[:]
    for key, value in kept + sorted(props.items()):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    if producer:
        proto.producer_name = producer
    if check:
        onnx.checker.check_model(proto)
    onnx.save(proto, path)


def pvt_mm_props(src: str) -> Dict[str, str]:
    """The file's ``pvt_mm.*`` metadata; an error for a file pvt_mm did
    not write."""
    props = {k: v for k, v in read_props(src).items()
             if k.startswith(META_PREFIX)}
    if 'pvt_mm.model_sha256' not in props:
        raise ValueError(f'{src} has no pvt_mm metadata: optimize files '
                         f'written by pvt_mm.deploy')
    return props


def _json_safe(obj):
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)
