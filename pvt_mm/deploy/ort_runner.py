"""Run a pvt_mm ONNX export with ONNX Runtime and get what the PyTorch model
returns: ``DetDataSample`` / ``SegDataSample`` lists from ``test_step``.

ONNX Runtime computes the graph (:mod:`.onnx_export` says which part of the
model that is); the rest runs through the very mmdet / mmseg functions the
PyTorch model calls (``bbox_head.predict_by_feat``, the RPN and RoI heads,
``decode_head.predict_by_feat`` + ``postprocess_result``), taken from a
model built from the same config. Before anything runs, the file's
metadata must name this config's model (:class:`ExportMismatchError`
otherwise), and each batch must be large enough for the backbone
(:class:`InputSizeError`).
"""
import json
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from .checks import (ExportMismatchError, check_input_size,
                     model_fingerprint)
from .onnx_export import META_PREFIX, graph_kind


def read_metadata(path: str, session=None) -> Dict[str, str]:
    """The ``pvt_mm.*`` metadata of an ONNX file (prefix removed)."""
    if session is None:
        import onnx
        props = {p.key: p.value for p in
                 onnx.load(path, load_external_data=False).metadata_props}
    else:
        props = session.get_modelmeta().custom_metadata_map
    return {k[len(META_PREFIX):]: v for k, v in props.items()
            if k.startswith(META_PREFIX)}


def exported_dataset_meta(meta: Dict[str, str]) -> dict:
    """The class names and palette recorded at export (JSON has no
    tuples: palette colours come back as the tuples visualizers expect)."""
    dataset_meta = json.loads(meta.get('dataset_meta') or '{}')
    palette = dataset_meta.get('palette')
    if isinstance(palette, list):
        dataset_meta['palette'] = [tuple(c) if isinstance(c, list) else c
                                   for c in palette]
    return dataset_meta


class ORTModel(nn.Module):
    """An exported model run by ONNX Runtime, used like the PyTorch model.

    Args:
        onnx_path: the file :func:`~pvt_mm.deploy.export_onnx` wrote.
        model: the model built from the same config (e.g. by
            :func:`~pvt_mm.deploy.load_model`). Its data preprocessor and
            post-processing are used; for a ``two_stage`` or
            ``query_based`` export its RoI / query heads too, so it must
            hold the checkpoint's weights (``weights_loaded=True``).
        weights_loaded: whether ``model`` holds trained weights.
        providers: ONNX Runtime execution providers (default: CPU).
        num_threads: ONNX Runtime's intra-op threads (default: torch's).
        profile_prefix: write ONNX Runtime's per-operator profile (JSON)
            to a file with this prefix (``end_profiling()`` closes it).

    Raises:
        ExportMismatchError: the file was not exported by pvt_mm, or from
            a config whose model differs from ``model.cfg``'s.
        ValueError: a two-stage / query-based export without trained
            weights for the heads that run in PyTorch.
    """

    def __init__(self, onnx_path: str, model: nn.Module,
                 weights_loaded: bool = True,
                 providers: Optional[Sequence[str]] = None,
                 num_threads: Optional[int] = None,
                 profile_prefix: Optional[str] = None):
        super().__init__()
        import onnxruntime as ort
        self.onnx_path = onnx_path
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        if profile_prefix:
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix
        self.session = ort.InferenceSession(
            onnx_path, options,
            providers=list(providers or ['CPUExecutionProvider']))
        self.meta = read_metadata(onnx_path, self.session)
        cfg = model.cfg
        if 'model_sha256' not in self.meta:
            raise ExportMismatchError(
                f'{onnx_path} has no pvt_mm metadata: export it with '
                f'tools/deployment/pytorch2onnx.py (the runner needs the '
                f'config fingerprint and the output layout it records)')
        if self.meta['model_sha256'] != model_fingerprint(cfg):
            raise ExportMismatchError(
                f'{onnx_path} was exported from config '
                f'{self.meta.get("config")!r} whose model differs from the '
                f'one of {cfg.filename!r} (fingerprint '
                f'{self.meta["model_sha256"][:12]} vs '
                f'{model_fingerprint(cfg)[:12]}); run it with the config it '
                f'was exported from, or export this config')
        self.kind = self.meta['kind']
        if self.kind != graph_kind(model):
            raise ExportMismatchError(f'{onnx_path} holds a {self.kind} graph '
                                      f'but {cfg.filename} builds a '
                                      f'{graph_kind(model)} model')
        if self.kind in ('two_stage', 'query_based') and not weights_loaded:
            raise ValueError(
                f'{onnx_path} holds only backbone + neck (+ RPN) of '
                f'{type(model).__name__}: its RoI / query heads run in '
                f'PyTorch and need the checkpoint; pass it too')
        self.groups = [tuple(g) for g in json.loads(self.meta['groups'])]
        self.min_size = int(self.meta.get('min_size', 1))
        self.model = model.eval()
        self.cfg = cfg
        self.dataset_meta = (exported_dataset_meta(self.meta)
                             or getattr(model, 'dataset_meta', None))

    @property
    def data_preprocessor(self):
        return self.model.data_preprocessor

    # ------------------------------------------------------------ raw
    def run(self, img: torch.Tensor) -> List[np.ndarray]:
        """ONNX Runtime's outputs for a preprocessed batch, in the graph's
        order (flat)."""
        check_input_size(img.shape, self.min_size,
                         f'{self.onnx_path} ({self.meta.get("config")})')
        feed = {'img': np.ascontiguousarray(img.detach().cpu().numpy(),
                                            dtype=np.float32)}
        return self.session.run(None, feed)

    def grouped(self, img: torch.Tensor) -> Dict[str, List[torch.Tensor]]:
        """:meth:`run`'s outputs as tensors, grouped as exported (e.g.
        ``{'bbox_head0': [cls per level], 'bbox_head1': [box per level]}``)."""
        flat = [torch.from_numpy(a) for a in self.run(img)]
        out, i = {}, 0
        for name, n in self.groups:
            out[name] = flat[i:i + n]
            i += n
        return out

    # ------------------------------------------------------------ results
    def predict(self, inputs: torch.Tensor, data_samples=None,
                rescale: bool = True):
        """What ``model.predict(inputs, data_samples)`` returns, with the
        graph's part computed by ONNX Runtime."""
        m = self.model
        g = self.grouped(inputs)
        if self.kind == 'segmentor':
            return self._predict_seg(inputs, data_samples, g['seg_logits'][0])
        metas = [s.metainfo for s in data_samples]
        with torch.no_grad():
            if self.kind == 'single_stage':
                outs = [g[name] for name, _ in self.groups]
                results = m.bbox_head.predict_by_feat(
                    *outs, batch_img_metas=metas, rescale=rescale)
            elif self.kind == 'two_stage':
                feats = tuple(g['feat'])
                rpn_outs = [g[name] for name, _ in self.groups
                            if name.startswith('rpn_head')]
                proposals = m.rpn_head.predict_by_feat(
                    *rpn_outs, batch_img_metas=metas, rescale=False)
                results = m.roi_head.predict(feats, proposals, data_samples,
                                             rescale=rescale)
            else:
                results = self._predict_query(tuple(g['feat']), data_samples,
                                              rescale)
        return m.add_pred_to_datasample(data_samples, results)

    def _predict_query(self, feats, data_samples, rescale):
        from mmdet.models.detectors import DetectionTransformer
        m = self.model
        if isinstance(m, DetectionTransformer):
            head_inputs = m.forward_transformer(feats, data_samples)
            return m.bbox_head.predict(**head_inputs, rescale=rescale,
                                       batch_data_samples=data_samples)
        proposals = m.rpn_head.predict(feats, data_samples)
        return m.roi_head.predict(feats, proposals, data_samples,
                                  rescale=rescale)

    def _predict_seg(self, inputs, data_samples, logits):
        m = self.model
        if m.test_cfg.get('mode', 'whole') != 'whole':
            raise ValueError(
                f"the ONNX runner supports test_cfg.mode='whole' (the "
                f"Semantic FPN configs'); {self.cfg.filename} uses "
                f"{m.test_cfg.mode!r}")
        if data_samples is not None:
            metas = [s.metainfo for s in data_samples]
        else:
            hw = inputs.shape[2:]
            metas = [dict(ori_shape=hw, img_shape=hw, pad_shape=hw,
                          padding_size=[0, 0, 0, 0])] * inputs.shape[0]
        with torch.no_grad():
            seg_logits = m.decode_head.predict_by_feat(logits, metas)
        return m.postprocess_result(seg_logits, data_samples)

    def test_step(self, data):
        """``model.test_step(data)``: preprocess a raw batch, predict."""
        data = self.data_preprocessor(data, False)
        return self.predict(data['inputs'], data['data_samples'])

    def forward(self, inputs, data_samples=None, mode='predict'):
        if mode != 'predict':
            raise ValueError(
                f"ORTModel runs mode='predict' only, not {mode!r}")
        return self.predict(inputs, data_samples)
