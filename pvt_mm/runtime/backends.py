"""Which runtime runs an end-to-end file, and at which precision.

Two backends read the same ONNX file: ONNX Runtime (fp32; its x86 CPU
provider has no bf16 path) and OpenVINO (fp32, or bf16 on a CPU that has
it: AVX512-BF16 or AMX). :func:`choose` turns the user's
``backend`` / ``precision`` (each may be ``'auto'``) into what runs:

- ``precision='auto'``: bf16 only with OpenVINO, on a CPU with bf16, for a
  model family whose bf16 accuracy was measured within
  :data:`MAX_DROP` points of fp32 (:data:`BF16_FAMILIES`, from the
  accuracy table in docs/deployment.md); fp32 otherwise;
- ``backend='auto'``: OpenVINO where it runs bf16 (installed, and bf16
  asked for or picked), else ONNX Runtime (in fp32 it is as fast as
  OpenVINO or faster: docs/benchmarks.md), else OpenVINO.

An explicit choice that cannot be honoured is an error that says why and
what to do, never a silent fallback that changes the numbers asked for.
:class:`OpenVINOSession` gives End2EndModel the few methods of an ONNX
Runtime session it uses. Imports numpy (and the chosen runtime) only.
"""
import functools
import json
import os
import os.path as osp
import types
from typing import Dict, NamedTuple, Optional

import numpy as np

from .errors import NotEnd2EndError, RuntimeInputError, require

BACKENDS = ('auto', 'onnxruntime', 'openvino')
PRECISIONS = ('auto', 'fp32', 'bf16')
#: The largest mAP / mIoU drop (points) at which ``precision='auto'``
#: picks bf16 for a family.
MAX_DROP = 0.5
#: Model families (the exported model's class, metadata
#: ``pvt_mm.architecture``) whose bf16 accuracy on the demo set was
#: measured within MAX_DROP points of fp32 with OpenVINO, with the largest
#: drop over the family's metrics (docs/deployment.md, "Accuracy per runner
#: and precision"; benchmarks/runtime_accuracy.py, Intel Xeon with AMX,
#: 2026-12-08). A family not listed runs fp32 under ``precision='auto'``.
BF16_FAMILIES: Dict[str, float] = {
    'RetinaNet': -0.40,       # bbox mAP 45.8 -> 46.2
    'MaskRCNN': 0.10,         # bbox mAP 17.2 -> 17.1, mask mAP 24.4 -> 24.3
    'EncoderDecoder': 0.00,   # Semantic FPN, mIoU 48.74 -> 48.74
}


class BackendError(RuntimeInputError):
    """A backend or precision that cannot run here, with the fix."""


class Choice(NamedTuple):
    backend: str    # 'onnxruntime' / 'openvino'
    precision: str  # 'fp32' / 'bf16'
    reason: str     # why, in words (printed once, written in the results)

    def describe(self) -> str:
        name = {'onnxruntime': 'ONNX Runtime', 'openvino': 'OpenVINO'}
        return f'{name[self.backend]} {self.precision} ({self.reason})'


def openvino_installed() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


#: ``ONEDNN_MAX_CPU_ISA`` values that still allow oneDNN's native bf16
#: kernels (AVX512-BF16 and above); any other cap (AVX2, AVX512_CORE, ...)
#: hides them from PyTorch's and OpenVINO's oneDNN alike.
BF16_ISA_CAPS = ('ALL', 'DEFAULT', 'AVX512_CORE_BF16', 'AVX512_CORE_FP16',
                 'AVX10_1_512', 'AVX512_CORE_AMX', 'AVX512_CORE_AMX_FP16',
                 'AVX10_2_512', 'AVX10_2_512_AMX_2')


def cpu_has_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16 in
    /proc/cpuinfo; elsewhere OpenVINO's ``OPTIMIZATION_CAPABILITIES``) and
    ``ONEDNN_MAX_CPU_ISA`` does not cap oneDNN below it (as make
    test-portability does to run another machine's kernels: OpenVINO then
    cannot compile a bf16 model)."""
    cap = os.environ.get('ONEDNN_MAX_CPU_ISA', '').strip().upper()
    if cap and cap not in BF16_ISA_CAPS:
        return False
    if osp.isfile('/proc/cpuinfo'):
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('flags'):
                    flags = set(line.split(':', 1)[1].split())
                    return bool({'avx512_bf16', 'amx_bf16'} & flags)
        return False
    if not openvino_installed():
        return False
    return 'BF16' in openvino_core().get_property('CPU',
                                                  'OPTIMIZATION_CAPABILITIES')


def choose(backend: str = 'auto', precision: str = 'auto',
           family: Optional[str] = None, device: str = 'cpu') -> Choice:
    """The backend and precision that run (module docstring); a
    :class:`BackendError` for a choice that cannot be honoured."""
    if backend not in BACKENDS:
        raise BackendError(f'backend={backend!r}: one of {BACKENDS}')
    if precision not in PRECISIONS:
        raise BackendError(f'precision={precision!r}: one of {PRECISIONS}')
    if backend == 'openvino' and not openvino_installed():
        raise BackendError('--backend openvino: OpenVINO is not installed '
                           'here: pip install openvino (or '
                           'pvt_mm[runtime-openvino]), or use --backend '
                           'onnxruntime')
    if device != 'cpu':
        if backend == 'openvino' or precision == 'bf16':
            raise BackendError(f'device={device!r}: OpenVINO and bf16 run '
                               f'on the CPU here; use --device cpu, or '
                               f'--backend onnxruntime --precision fp32')
        return Choice('onnxruntime', 'fp32', f'device {device}')
    bf16_ok, bf16_why = auto_bf16(family)
    if backend == 'auto':
        if not openvino_installed():
            backend, why = 'onnxruntime', 'OpenVINO is not installed'
        elif precision == 'bf16' or (precision == 'auto' and bf16_ok):
            backend, why = 'openvino', 'OpenVINO for bf16'
        elif onnxruntime_installed():
            # fp32: ONNX Runtime is as fast as OpenVINO f32 or faster
            # (docs/benchmarks.md), so it runs fp32
            backend = 'onnxruntime'
            why = ('--precision fp32' if precision == 'fp32' else
                   bf16_why) + '; fp32 runs in ONNX Runtime'
            return Choice(backend, 'fp32', why)
        else:
            backend, why = 'openvino', 'ONNX Runtime is not installed'
    else:
        why = f'--backend {backend}'
    if precision == 'bf16':
        if backend == 'onnxruntime':
            raise BackendError(
                '--precision bf16: ONNX Runtime\'s CPU provider has no bf16 '
                'path; use --backend openvino (pip install openvino)')
        if not cpu_has_bf16():
            raise BackendError(
                '--precision bf16: this CPU has no native bf16 (neither '
                'AVX512-BF16 nor AMX in /proc/cpuinfo); use --precision fp32')
        return Choice(backend, 'bf16', f'{why}; --precision bf16')
    if precision == 'fp32':
        return Choice(backend, 'fp32', f'{why}; --precision fp32')
    if backend != 'openvino':
        return Choice(backend, 'fp32', why)
    return Choice(backend, 'bf16' if bf16_ok else 'fp32', f'{why}; {bf16_why}')


def onnxruntime_installed() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def auto_bf16(family: Optional[str]):
    """``(whether precision='auto' may pick bf16 for ``family`` on this
    CPU, why in words)``."""
    if not cpu_has_bf16():
        return False, 'the CPU has no bf16'
    if family not in BF16_FAMILIES:
        return False, (f'bf16 accuracy of {family or "this model family"} '
                       f'not measured within {MAX_DROP} points')
    return True, (f'the CPU has bf16 and {family}\'s measured bf16 drop is '
                  f'{BF16_FAMILIES[family]:+.2f} points')


def onnx_metadata(model) -> Dict[str, str]:
    """The ``metadata_props`` of an ONNX file as an OpenVINO model read
    them (its rt_info ``framework`` section)."""
    try:
        framework = model.get_rt_info(['framework']).astype(dict)
    except Exception:  # no framework section: not read from ONNX metadata
        return {}
    return {str(k): str(v.astype(str) if hasattr(v, 'astype') else v)
            for k, v in framework.items()}


@functools.lru_cache(maxsize=None)
def openvino_core():
    """The process's one ``openvino.Core``: the model read to find its
    family is compiled by the core that read it, and each file does not
    start a core of its own."""
    return require('openvino').Core()


def read_openvino_model(path: str):
    """``openvino_core().read_model(path)``, or :class:`NotEnd2EndError`
    naming the file and the OpenVINO version when it cannot read it."""
    ov = require('openvino')
    try:
        return openvino_core().read_model(path)
    except Exception as e:  # OpenVINO's own exception types
        raise NotEnd2EndError(
            f'{path} is not an ONNX model OpenVINO {ov.__version__} can read '
            f'({type(e).__name__}: {str(e).strip()[:300]}); run it with '
            f'--backend onnxruntime, or try a newer openvino') from e


class OpenVINOSession:
    """An ONNX file compiled by OpenVINO for the CPU, with the methods of an
    ONNX Runtime ``InferenceSession`` that End2EndModel uses
    (``get_modelmeta``, ``get_inputs``, ``get_outputs``, ``run``).

    ``precision``: ``'fp32'`` (``INFERENCE_PRECISION_HINT=f32``, set
    explicitly: OpenVINO's own default on a bf16 CPU is bf16) or
    ``'bf16'``. Outputs are named by the file's ONNX output names, in
    their order."""

    def __init__(self, path: str, precision: str = 'fp32',
                 num_threads: Optional[int] = None, model=None):
        ov = require('openvino')
        core = openvino_core()
        if model is None:  # else: read_openvino_model(path) already read it
            model = read_openvino_model(path)
        self._meta = onnx_metadata(model)
        listed = json.loads(self._meta.get('pvt_mm.outputs', '[]'))
        config = {'INFERENCE_PRECISION_HINT':
                  'bf16' if precision == 'bf16' else 'f32',
                  'PERFORMANCE_HINT': 'LATENCY'}
        if num_threads:
            config['INFERENCE_NUM_THREADS'] = int(num_threads)
        try:
            self.compiled = core.compile_model(model, 'CPU', config)
        except Exception as e:
            raise NotEnd2EndError(
                f'{path}: OpenVINO {ov.__version__} cannot compile it for the '
                f'CPU ({type(e).__name__}: {str(e).strip()[:300]}); run it '
                f'with --backend onnxruntime') from e
        self.request = self.compiled.create_infer_request()
        self.precision = precision
        self.version = ov.__version__
        self._inputs = [p.get_any_name() for p in model.inputs]
        # the outputs' ONNX names (OpenVINO's any-name may be the tensor
        # name of the node that computes one)
        self._outputs = [next((n for n in listed if n in p.get_names()),
                              p.get_any_name()) for p in model.outputs]

    def get_modelmeta(self):
        return types.SimpleNamespace(custom_metadata_map=dict(self._meta))

    def get_inputs(self):
        return [types.SimpleNamespace(name=n) for n in self._inputs]

    def get_outputs(self):
        return [types.SimpleNamespace(name=n) for n in self._outputs]

    def run(self, output_names, feeds: Dict[str, np.ndarray]):
        results = self.request.infer(feeds)
        # copies: the request reuses its output buffers
        return [np.array(results[port]) for port in self.compiled.outputs]


__all__ = ['BACKENDS', 'BF16_FAMILIES', 'BackendError', 'Choice', 'MAX_DROP',
           'OpenVINOSession', 'PRECISIONS', 'auto_bf16', 'choose',
           'cpu_has_bf16', 'onnxruntime_installed',
           'openvino_core', 'openvino_installed', 'read_openvino_model']
