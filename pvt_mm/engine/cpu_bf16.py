"""bf16 inference on the CPU: the network under autocast, the
post-processing in fp32 (``tools/test.py --amp`` and
``tools/misc/infer.py --amp`` without a GPU).

Autocast around a whole ``test_step`` fails in the post-processing: mmcv's
CPU NMS and RoIAlign take fp32 only (``RuntimeError: expected scalar type
Float but found BFloat16``), and rescaling boxes or logits in bf16 would
lose precision where it is cheap to keep it. :func:`enable_cpu_bf16`
instead runs the parts that hold the compute under
``torch.autocast('cpu', torch.bfloat16)`` and hands fp32 to what follows
them:

- ``extract_feat`` (backbone and neck) of a detector or segmentor;
- the ``forward`` of every head module (a class named ``...Head``: dense
  heads, the RPN, the box / mask heads of the RoI stages, decode heads).

Their tensor outputs are cast back to fp32, so NMS, RoIAlign (on fp32
features), box decoding and rescaling run as without ``--amp``. The model
object is changed in place (instance attributes; :func:`disable_cpu_bf16`
removes them). Needs a CPU with native bf16 (AVX512-BF16 or AMX):
elsewhere bf16 is emulated and slower than fp32, which is an error here.
"""
import functools
from typing import List

import torch
import torch.nn as nn

#: the attribute marking a wrapped method (its original is restored from
#: the class)
_MARK = '_pvt_mm_cpu_bf16'


def _to_fp32(value):
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, (list, tuple)):
        items = [_to_fp32(v) for v in value]
        return type(value)(*items) if hasattr(value, '_fields') else \
            type(value)(items)
    if isinstance(value, dict):
        return type(value)((k, _to_fp32(v)) for k, v in value.items())
    return value


def _bf16(fn):
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = fn(*args, **kwargs)
        return _to_fp32(out)
    setattr(wrapped, _MARK, True)
    return wrapped


def network_parts(model: nn.Module) -> List[str]:
    """The names of what :func:`enable_cpu_bf16` runs in bf16:
    ``'extract_feat'`` and the head modules (dotted paths)."""
    parts = ['extract_feat'] if hasattr(model, 'extract_feat') else []
    parts += [name for name, m in model.named_modules()
              if name and type(m).__name__.endswith('Head')]
    return parts


def enable_cpu_bf16(model: nn.Module) -> List[str]:
    """Run ``model``'s network parts in bf16 on the CPU (module docstring);
    return their names."""
    from pvt_mm.runtime.backends import cpu_has_bf16
    if not cpu_has_bf16():
        raise SystemExit(
            '--amp on the CPU runs the network in bf16, and this CPU has no '
            'native bf16 (neither AVX512-BF16 nor AMX in /proc/cpuinfo); '
            'drop --amp to run in fp32, or run on a GPU')
    model = getattr(model, 'module', model)  # DDP / MMDistributedDataParallel
    parts = network_parts(model)
    for name in parts:
        if name == 'extract_feat':
            model.extract_feat = _bf16(type(model).extract_feat.__get__(model))
        else:
            module = model.get_submodule(name)
            module.forward = _bf16(type(module).forward.__get__(module))
    return parts


def disable_cpu_bf16(model: nn.Module) -> None:
    """Undo :func:`enable_cpu_bf16`."""
    model = getattr(model, 'module', model)
    for m in [model] + list(model.modules()):
        for attr in ('extract_feat', 'forward'):
            if getattr(m.__dict__.get(attr), _MARK, False):
                del m.__dict__[attr]


__all__ = ['disable_cpu_bf16', 'enable_cpu_bf16', 'network_parts']
