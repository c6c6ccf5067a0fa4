"""The aten operators a step dispatches (:class:`OpRecorder`,
:func:`training_step_ops`): benchmarks/op_trace.py's table and the default
suite's guard (tests/execution/test_op_count.py)."""
import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode


# Operator counts: what a launch-bound step pays for. On a GPU, a training
# step of a backbone at classification size costs about one kernel launch
# per operator more than its arithmetic, so the number of operators is a
# device-independent proxy for that overhead (docs/benchmarks.md,
# "Operator counts"; tests/execution/test_op_count.py).

#: aten operators that return a tensor of their own yet compute nothing:
#: allocations (memory from the caching allocator, no kernel) and
#: ``_unsafe_view`` (a view whose schema does not say so).
NO_KERNEL_OPS = frozenset({
    'aten::empty', 'aten::empty_like', 'aten::empty_strided',
    'aten::new_empty', 'aten::new_empty_strided', 'aten::_unsafe_view'})


def is_view_op(func) -> bool:
    """Whether an aten operator only makes a view: its schema returns an
    alias of an input that it does not write (``view``, ``permute``,
    ``t``, ``transpose``, ``expand``, ``detach``, ``unbind``,
    ``as_strided``, ``alias``, ...; ``Tensor(a)`` in the schema). In-place
    ops return their input too, but write it (``Tensor(a!)``): they compute."""
    return any(r.alias_info is not None and not r.alias_info.is_write
               for r in func._schema.returns)


def is_compute_op(func) -> bool:
    """Whether an aten operator does work on the device (launches a kernel
    there): an ``aten`` operator (not ``prim::device`` and the like, which
    only read metadata), neither a view (:func:`is_view_op`) nor one of
    :data:`NO_KERNEL_OPS`. Counted as dispatched: an operator whose kernel
    calls others (a convolution converting its input's layout, say) counts
    once, as it does in the peers."""
    name = func._schema.name
    return (name.startswith('aten::') and name not in NO_KERNEL_OPS
            and not is_view_op(func))


class OpRecorder(TorchDispatchMode):
    """Records every aten operator dispatched inside the ``with`` block as
    ``(op, [input shapes])`` in ``self.ops``: the forward, and the backward
    where autograd runs it in this thread (on CPU, all of it). Only this
    thread's operators are recorded."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append((func, [tuple(a.shape) for a in args
                                if isinstance(a, torch.Tensor)]))
        return func(*args, **(kwargs or {}))

    def compute_ops(self) -> list:
        """The recorded ``(op, shapes)`` whose op :func:`is_compute_op`."""
        return [o for o in self.ops if is_compute_op(o[0])]


def outputs_list(out) -> list:
    """A backbone's outputs as a list (from a list, tuple, dict or tensor)."""
    if isinstance(out, dict):
        out = list(out.values())
    return list(out) if isinstance(out, (list, tuple)) else [out]


def training_step_ops(model: nn.Module, x: torch.Tensor) -> OpRecorder:
    """The :class:`OpRecorder` of one training step of a backbone:
    ``train()`` mode, forward, loss = sum of the outputs' means, backward,
    starting with no gradients (none is accumulated into an old one) and
    leaving none."""
    model.train()
    model.zero_grad(set_to_none=True)
    with OpRecorder() as rec:
        sum(o.mean() for o in outputs_list(model(x))).backward()
    model.zero_grad(set_to_none=True)
    return rec
