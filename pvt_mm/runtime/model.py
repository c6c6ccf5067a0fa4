"""An end-to-end file run by ONNX Runtime or OpenVINO: images in, results
out.

:class:`End2EndModel` reads the file's ``pvt_mm.*`` metadata, refuses a
file that is not an end-to-end export (:class:`NotEnd2EndError`) or, when
the caller gives a config fingerprint, one exported from another config
(:class:`ConfigMismatchError`), then per image: reads it (a path) or checks
it (an ``H x W x 3`` ``uint8`` BGR array), resizes it as the test
pipeline's ``Resize`` recorded in the metadata does, checks it is large
enough for the backbone (:class:`ImageTooSmallError`) and feeds ``image``
and ``ori_shape``; the graph does the rest (pvt_mm.deploy.end2end's
contract). Which runtime and precision run it: :mod:`.backends`. Imports
numpy, OpenCV and the chosen runtime (onnxruntime or openvino) only.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Optional

import numpy as np

from .backends import (Choice, OpenVINOSession, choose, cpu_has_bf16,
                       onnx_metadata, openvino_installed, read_openvino_model)
from .errors import (ConfigMismatchError, ImageTooSmallError, NotEnd2EndError,
                     require)
from .image import load_image, rescale_size, resize_image
from .results import Detections, Segmentation

META_PREFIX = 'pvt_mm.'
#: metadata layouts this runtime reads (``pvt_mm.format_version``)
FORMAT_VERSIONS = ('1', )
INPUTS = ('image', 'ori_shape')
DET_OUTPUTS = ('dets', 'scores', 'labels', 'num_dets')
SEG_OUTPUTS = ('label_map', )
INPUT_DTYPES = {'uint8': np.uint8, 'float32': np.float32}
EXPORT_HINT = ('export it end to end with tools/deployment/pytorch2onnx.py '
               'CONFIG CHECKPOINT (without --no-end2end)')



def read_metadata(session) -> Dict[str, str]:
    """The ``pvt_mm.*`` metadata of an ONNX Runtime session's model
    (prefix removed)."""
    props = session.get_modelmeta().custom_metadata_map
    return {k[len(META_PREFIX):]: v for k, v in props.items()
            if k.startswith(META_PREFIX)}


def _session(path: str, providers=None, num_threads: Optional[int] = None):
    ort = require('onnxruntime')
    options = ort.SessionOptions()
    if num_threads:
        options.intra_op_num_threads = int(num_threads)
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(
            path, options,
            providers=list(providers or ['CPUExecutionProvider']))
    except Exception as e:  # ORT's own exception types
        raise NotEnd2EndError(
            f'{path} is not an ONNX model ONNX Runtime can load '
            f'({type(e).__name__}: {str(e).strip()[:300]}); {EXPORT_HINT}'
        ) from e


def open_session(path: str, providers=None,
                 num_threads: Optional[int] = None):
    """An ONNX Runtime session of ``path`` (:class:`NotEnd2EndError` if
    ONNX Runtime cannot load it)."""
    if not osp.isfile(os.fspath(path)):
        raise FileNotFoundError(f'ONNX file {path!r} does not exist')
    return _session(os.fspath(path), providers, num_threads)


def is_end2end(path_or_session) -> bool:
    """Whether a file (or an ONNX Runtime session of it) is a pvt_mm
    end-to-end export (metadata ``pvt_mm.end2end == '1'``)."""
    session = (open_session(path_or_session)
               if isinstance(path_or_session, (str, os.PathLike))
               else path_or_session)
    return read_metadata(session).get('end2end') == '1'


class NetworkOnlyError(NotEnd2EndError):
    """A pvt_mm export whose graph ends before the post-processing
    (``--no-end2end``): tools/misc/infer.py runs it with PyTorch."""


def open_backend(path: str, backend: str = 'auto', precision: str = 'auto',
                 providers=None, num_threads: Optional[int] = None):
    """``(session, choice)``: ``path`` opened by the backend and at the
    precision :func:`~pvt_mm.runtime.backends.choose` picks (ONNX Runtime
    ``providers`` other than the CPU's mean ONNX Runtime fp32)."""
    device = 'cuda' if any('CUDA' in str(p) for p in providers or []) \
        else 'cpu'
    family = ov_model = None
    if (precision == 'auto' and backend in ('auto', 'openvino')
            and device == 'cpu' and cpu_has_bf16() and openvino_installed()):
        # the exported model's class (pvt_mm.architecture) decides bf16;
        # the model read for it is compiled too, if OpenVINO runs it
        ov_model = read_openvino_model(path)
        family = onnx_metadata(ov_model).get(META_PREFIX + 'architecture')
    choice = choose(backend, precision, family, device)
    if choice.backend == 'openvino':
        return OpenVINOSession(path, choice.precision, num_threads,
                               model=ov_model), choice
    return _session(path, providers, num_threads), choice


class End2EndModel:
    """A pvt_mm end-to-end ONNX file, run by ONNX Runtime or OpenVINO.

    Args:
        path: the file ``tools/deployment/pytorch2onnx.py`` wrote.
        fingerprint: the config's fingerprint
            (:func:`pvt_mm.runtime.model_fingerprint`); when given, a file
            exported from another config raises
            :class:`ConfigMismatchError`.
        config: the config's name, for that error message.
        providers: ONNX Runtime execution providers (default: CPU).
        num_threads: ONNX Runtime's intra-op threads (default: its own).
        session: an ONNX Runtime session of ``path`` already made (then
            ``providers``, ``num_threads``, ``backend`` and ``precision``
            are not used).
        backend: ``'auto'`` (OpenVINO where installed, else ONNX Runtime),
            ``'onnxruntime'`` or ``'openvino'``.
        precision: ``'auto'`` (bf16 only with OpenVINO, on a bf16 CPU, for
            a model family measured within 0.5 points of fp32), ``'fp32'``
            or ``'bf16'`` (:mod:`pvt_mm.runtime.backends`).

    Attributes: ``choice`` (what runs: backend, precision, why),
    ``kind`` (``'segmentor'``, ``'single_stage'``,
    ``'two_stage'``), ``task`` (``'segmentation'`` / ``'detection'``),
    ``outputs``, ``input_spec`` (dtype, resize, min_size), ``classes``,
    ``palette``, ``meta`` (all ``pvt_mm.*`` metadata).
    """

    def __init__(self, path: str, fingerprint: Optional[str] = None,
                 config: Optional[str] = None, providers=None,
                 num_threads: Optional[int] = None, session=None,
                 backend: str = 'auto', precision: str = 'auto'):
        path = os.fspath(path)
        if not osp.isfile(path):
            raise FileNotFoundError(f'ONNX file {path!r} does not exist')
        self.path = path
        if session is None:
            session, self.choice = open_backend(path, backend, precision,
                                                providers, num_threads)
        elif isinstance(session, OpenVINOSession):
            self.choice = Choice('openvino', session.precision,
                                 'session given')
        else:
            self.choice = Choice('onnxruntime', 'fp32', 'session given')
        self.session = session
        self.meta = meta = read_metadata(self.session)
        if not meta:
            raise NotEnd2EndError(
                f'{path} was not written by pvt_mm\'s exporter (it has no '
                f'pvt_mm.* metadata); {EXPORT_HINT}')
        if meta.get('end2end') != '1':
            raise NetworkOnlyError(
                f'{path} is a network-only pvt_mm export (from config '
                f'{meta.get("config")!r}): its graph ends before the '
                f'post-processing, which runs in PyTorch, so the torch-free '
                f'runtime cannot run it. Re-export it end to end with '
                f'tools/deployment/pytorch2onnx.py CONFIG CHECKPOINT (without '
                f'--no-end2end), or run this file with tools/misc/infer.py '
                f'CONFIG --onnx {osp.basename(path)} where torch, mmdet / '
                f'mmseg are installed')
        version = meta.get('format_version')
        if version not in FORMAT_VERSIONS:
            raise NotEnd2EndError(
                f'{path} has pvt_mm metadata format {version!r}; this runtime '
                f'reads {list(FORMAT_VERSIONS)}: re-export it with this '
                f'version of pvt_mm')
        self.kind = meta.get('kind', '')
        try:
            self.outputs = list(json.loads(meta['outputs']))
            self.input_spec = json.loads(meta['input'])
            self.dataset_meta = json.loads(meta.get('dataset_meta') or '{}')
        except (KeyError, ValueError) as e:
            raise NotEnd2EndError(
                f'{path}: its pvt_mm metadata is incomplete or not JSON '
                f'({type(e).__name__}: {e}); {EXPORT_HINT}') from e
        inputs = tuple(i.name for i in self.session.get_inputs())
        graph_outputs = [o.name for o in self.session.get_outputs()]
        if inputs != INPUTS or graph_outputs != self.outputs:
            raise NotEnd2EndError(
                f'{path}: its graph has inputs {list(inputs)} and outputs '
                f'{graph_outputs}, not the end-to-end contract\'s '
                f'{list(INPUTS)} -> {self.outputs}; {EXPORT_HINT}')
        if self.outputs[:1] == list(SEG_OUTPUTS):
            self.task = 'segmentation'
        elif tuple(self.outputs[:4]) == DET_OUTPUTS:
            self.task = 'detection'
        else:
            raise NotEnd2EndError(f'{path}: outputs {self.outputs} are '
                                  f'neither detection {list(DET_OUTPUTS)} nor '
                                  f'segmentation {list(SEG_OUTPUTS)}')
        dtype = self.input_spec.get('dtype', 'uint8')
        if dtype not in INPUT_DTYPES:
            raise NotEnd2EndError(f'{path}: input dtype {dtype!r} is not one '
                                  f'of {sorted(INPUT_DTYPES)}')
        self.input_dtype = INPUT_DTYPES[dtype]
        resize = self.input_spec.get('resize') or {}
        if not resize.get('scale'):
            raise NotEnd2EndError(f'{path}: its metadata names no test '
                                  f'resize (pvt_mm.input.resize.scale); '
                                  f'{EXPORT_HINT}')
        self.scale = [int(s) for s in resize['scale']]
        self.keep_ratio = bool(resize.get('keep_ratio', True))
        self.min_size = int(self.input_spec.get('min_size',
                                                meta.get('min_size', 1)))
        self.size_divisor = int(self.input_spec.get('size_divisor') or 1)
        self.classes = list(self.dataset_meta.get('classes') or [])
        self.palette = self.dataset_meta.get('palette')
        self.config = meta.get('config', '')
        self.fingerprint = meta.get('model_sha256', '')
        if fingerprint is not None:
            self.check_config(fingerprint, config)

    def check_config(self, fingerprint: str,
                     config: Optional[str] = None) -> None:
        """Raise :class:`ConfigMismatchError` unless the file was exported
        from a config whose model has ``fingerprint``."""
        if fingerprint == self.fingerprint:
            return
        raise ConfigMismatchError(
            f'{self.path} was exported from config {self.config!r}, whose '
            f'model differs from the one of {config or "the given config"!r} '
            f'(fingerprint {self.fingerprint[:12]} vs {fingerprint[:12]}); '
            f'run it with the config it was exported from, or export this '
            f'config')

    # ------------------------------------------------------------ inputs
    def input_size(self, hw) -> tuple:
        """``(H, W)`` an image of original size ``hw`` has after the test
        resize."""
        return rescale_size(hw, self.scale, self.keep_ratio)

    def check_size(self, hw, name: str = 'image') -> tuple:
        """The resized size of an ``hw`` image, or
        :class:`ImageTooSmallError` if the backbone cannot take it (after
        the graph pads it to ``size_divisor``; a file that does not record
        the divisor is checked before padding, the safe side)."""
        h, w = self.input_size(hw)
        d = self.size_divisor or 1
        ph, pw = -(-h // d) * d, -(-w // d) * d
        if min(ph, pw) < max(self.min_size, 1):
            padded = (f', padded to {ph}x{pw}' if (ph, pw) != (h, w) else
                      '' if 'size_divisor' in self.input_spec else
                      ' (the file records no padding divisor: checked before '
                      'padding)')
            raise ImageTooSmallError(
                f'{name} is {hw[0]}x{hw[1]} pixels, which the model\'s test '
                f'resize (scale {self.scale}, keep_ratio={self.keep_ratio}) '
                f'makes {h}x{w}{padded}; the model ({self.config}) needs at '
                f'least {self.min_size} pixels on each side: crop the image '
                f'to a less extreme aspect ratio or pad it')
        return h, w

    def prepare(self, image, name: str = 'image'):
        """``(resized image, (h, w) original)`` for one image (path or
        array)."""
        img = load_image(image, name)
        hw = img.shape[:2]
        self.check_size(hw, name)
        return resize_image(img, self.scale, self.keep_ratio), hw

    # ------------------------------------------------------------ running
    def run(self, images: np.ndarray, ori_shape) -> Dict[str, np.ndarray]:
        """The graph's outputs for a batch ``(B, H, W, 3)`` of resized
        images of the original size ``ori_shape`` = ``(h, w)``."""
        images = np.asarray(images)
        batch = np.ascontiguousarray(images.transpose(0, 3, 1, 2),
                                     dtype=self.input_dtype)
        ori = np.tile(np.asarray(ori_shape, dtype=np.int64).reshape(1, 2),
                      (len(batch), 1))
        got = self.session.run(None, {'image': batch, 'ori_shape': ori})
        return dict(zip(self.outputs, got))

    def _results(self, out: Dict[str, np.ndarray]) -> list:
        if self.task == 'segmentation':
            return [Segmentation(label_map=m.astype(np.int64))
                    for m in out['label_map']]
        results = []
        for i, n in enumerate(out['num_dets'].astype(np.int64).tolist()):
            masks = out.get('masks')
            results.append(Detections(
                boxes=out['dets'][i, :n].astype(np.float32),
                scores=out['scores'][i, :n].astype(np.float32),
                labels=out['labels'][i, :n].astype(np.int64),
                masks=None if masks is None else masks[i, :n].astype(bool)))
        return results

    def predict(self, images, batch_size: int = 1):
        """Results for ``images`` (paths and / or ``H x W x 3`` uint8 BGR
        arrays): a list of :class:`Detections` / :class:`Segmentation` in
        their order, or one result for one image not in a list. Consecutive
        images of the same size go through the graph together, up to
        ``batch_size`` at a time."""
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        results: List = []
        pending: List[np.ndarray] = []
        pending_hw = None

        def flush():
            if pending:
                results.extend(self._results(
                    self.run(np.stack(pending), pending_hw)))
                pending.clear()

        for i, item in enumerate(items):
            name = (os.fspath(item) if isinstance(item, (str, os.PathLike))
                    else f'image {i}')
            img, hw = self.prepare(item, name)
            if pending and (hw != pending_hw or len(pending) >= batch_size):
                flush()
            pending.append(img)
            pending_hw = hw
        flush()
        return results[0] if single else results

    __call__ = predict


def load(path: str, **kwargs) -> End2EndModel:
    """:class:`End2EndModel` of ``path``."""
    return End2EndModel(path, **kwargs)


__all__ = ['End2EndModel', 'load', 'read_metadata', 'is_end2end',
           'open_backend', 'open_session', 'META_PREFIX', 'NetworkOnlyError']
