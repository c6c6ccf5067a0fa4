"""The one switch that decides how pvt_mm layers are executed.

Every layer in :mod:`pvt_mm.models` states its computation plainly (the
reference path). A few places ask this module whether a faster way to get
the same numbers applies; the answer comes from the process-wide
:class:`ExecutionPolicy`:

* ``with execution_policy('reference'):`` runs the reference path only
  (what a test or a user comparing against another implementation wants);
* ``with execution_policy(ffn_band_bytes=1 << 20):`` changes one setting;
* ``set_policy(...)`` changes it for the rest of the process;
* the environment variable ``PVT_MM_EXECUTION=reference`` (or ``fast``, the
  default) sets the policy at import time.

Whatever the policy, ``torch.compile`` and ONNX export see the reference
path (the compiler fuses and rematerialises by itself; exporters want the
plain graph). The choices are per device: on CUDA the device-independent
ones apply (in-place sums, fused drop-path residuals), the FFN's recompute
in backward only when asked for (:data:`RECOMPUTE_FFN_BY_DEVICE`), and
attention is always the fused ``F.scaled_dot_product_attention``; the CPU
gets the rest too (banded FFN, query groups, the recompute).
"""
import contextlib
import dataclasses
import os
from typing import Iterator, Optional, Union

import torch

#: Environment variable read once, when this module is imported.
ENV_VAR = 'PVT_MM_EXECUTION'


@dataclasses.dataclass(frozen=True)
class ExecutionPolicy:
    """Which execution strategies may replace the reference computation.

    None of them changes a result: each is tested against the reference
    path (``tests/execution``).

    Attributes:
        inplace: sum residuals into the branch output instead of a new
            tensor; apply the FFN's GELU in place when no gradient is
            recorded.
        fused_drop_path: a residual with stochastic depth,
            ``x + branch * keep / keep_prob``, is one ``torch.addcmul``
            (fewer operators: what a launch-bound GPU step pays for).
        recompute_ffn: in training, the FFN keeps only fc1's output for
            backward and recomputes the rest there, saving the widest
            activations' memory for a second run of the depthwise conv and
            activation. ``True``: always; ``False``: never; ``None`` (the
            fast policy): the FFN's own switch (the backbones'
            ``recompute_ffn`` argument, next to ``with_cp``), else the
            device's default, :data:`RECOMPUTE_FFN_BY_DEVICE`
            (:func:`recomputes_ffn`).
        cpu_banded_ffn: on CPU, run the FFN of large maps in bands of rows,
            so its 4-8x wider hidden map never exists whole (inference and,
            with a custom autograd Function, training).
        cpu_split_queries: on CPU in training, split the queries of
            attention with fewer (batch, head) pairs than threads into
            groups, so the backward uses every core.
        ffn_band_bytes: hidden-map bytes per band. Bands of a few MiB are
            served from memory the allocator already holds; larger ones are
            mapped fresh, and page faults then cost more than the FFN's
            arithmetic.
        ffn_min_band: the fewest rows (or tokens) a band may have.
        ffn_train_band_min_bytes: training runs the FFN in bands only when
            its whole hidden map would take at least this many bytes (glibc
            maps allocations above 32 MiB fresh from the kernel; smaller ones
            are reused, and banded training recomputes fc1).
    """
    inplace: bool = True
    fused_drop_path: bool = True
    recompute_ffn: Optional[bool] = None
    cpu_banded_ffn: bool = True
    cpu_split_queries: bool = True
    ffn_band_bytes: int = 4 << 20
    ffn_min_band: int = 8
    ffn_train_band_min_bytes: int = 32 << 20

    @classmethod
    def fast(cls) -> 'ExecutionPolicy':
        """Every strategy on, default settings (the default policy)."""
        return cls()

    @classmethod
    def reference(cls) -> 'ExecutionPolicy':
        """No strategy: every layer runs its plain computation."""
        return cls(inplace=False, fused_drop_path=False, recompute_ffn=False,
                   cpu_banded_ffn=False, cpu_split_queries=False)

    @classmethod
    def named(cls, name: str) -> 'ExecutionPolicy':
        """``'fast'`` or ``'reference'``."""
        if name not in ('fast', 'reference'):
            raise ValueError(f"execution policy {name!r}: use 'fast' or "
                             f"'reference' (e.g. {ENV_VAR}=reference)")
        return getattr(cls, name)()


#: Where the FFN recomputes in backward unless told (the fast policy's
#: ``recompute_ffn=None`` and a backbone built with ``recompute_ffn=None``).
#: CPU: on; it costs no measurable time there (docs/benchmarks.md, "Execution
#: policy per device") and keeps training at 800x1333 within a CPU's memory.
#: Any other device (CUDA): off; a GPU step at these sizes is bound by
#: operator launches and the recompute adds 32 to a PVTv2-B2 step (the
#: operator counts in docs/benchmarks.md), so memory savings that cost time
#: are asked for explicitly (``recompute_ffn=True``, like ``with_cp``).
RECOMPUTE_FFN_BY_DEVICE = {'cpu': True}


def recomputes_ffn(policy: ExecutionPolicy, switch: Optional[bool],
                   device_type: str) -> bool:
    """Whether an FFN with its own ``switch`` (None: unset) recomputes in
    backward on ``device_type`` under ``policy``: the policy's ``True`` /
    ``False`` first (so ``'reference'`` never does), then the switch, then
    :data:`RECOMPUTE_FFN_BY_DEVICE`."""
    for choice in (policy.recompute_ffn, switch):
        if choice is not None:
            return choice
    return RECOMPUTE_FFN_BY_DEVICE.get(device_type, False)


def _from_env() -> ExecutionPolicy:
    return ExecutionPolicy.named(os.environ.get(ENV_VAR, 'fast').strip().lower()
                                 or 'fast')


_policy = _from_env()


def get_policy() -> ExecutionPolicy:
    """The policy in force."""
    return _policy


def set_policy(policy: Union[str, ExecutionPolicy]) -> ExecutionPolicy:
    """Make ``policy`` (an :class:`ExecutionPolicy`, ``'fast'`` or
    ``'reference'``) the process-wide policy; return the previous one."""
    global _policy
    previous = _policy
    _policy = (ExecutionPolicy.named(policy) if isinstance(policy, str)
               else policy)
    return previous


@contextlib.contextmanager
def execution_policy(policy: Union[None, str, ExecutionPolicy] = None,
                     **changes) -> Iterator[ExecutionPolicy]:
    """Run a block under ``policy`` (default: the current one) with
    ``changes`` applied to it, e.g. ``execution_policy('reference')`` or
    ``execution_policy(ffn_band_bytes=1, ffn_min_band=5)``."""
    base = (get_policy() if policy is None else
            ExecutionPolicy.named(policy) if isinstance(policy, str) else policy)
    previous = set_policy(dataclasses.replace(base, **changes))
    try:
        yield get_policy()
    finally:
        set_policy(previous)


def plain_graph() -> bool:
    """Whether a compiler or exporter is recording the computation: then
    the reference path is taken whatever the policy."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


def cpu_policy(x: torch.Tensor) -> Optional[ExecutionPolicy]:
    """The policy if ``x`` is executed eagerly on CPU, else ``None``."""
    if x.device.type != 'cpu' or plain_graph():
        return None
    return _policy
