"""How pvt_mm layers are executed: faster or export-safe ways to compute
exactly what :mod:`pvt_mm.models` states, behind one policy.

:mod:`pvt_mm.models` holds the architectures as the papers describe them;
this package holds the engineering that makes them fast on CPU and
exportable, and nothing here changes a result:

* :mod:`.policy`: :class:`ExecutionPolicy`, :func:`execution_policy`,
  :func:`set_policy`, the ``PVT_MM_EXECUTION`` environment variable;
* :mod:`.sdpa`: the attention kernel (fused SDPA; query groups for a
  multi-core CPU backward);
* :mod:`.ffn`: the FFN strategies (banded CPU execution with its autograd
  Function, recompute in backward, in-place activation);
* :mod:`.ops`: in-place residual sums, drop-path residuals in one
  operator, export-safe adaptive pooling and resizing.

It depends on torch only (never on :mod:`pvt_mm.models`).
"""
from .sdpa import attention
from .ffn import ffn_strategy
from .ops import (activation, adaptive_avg_pool2d, add_residual,
                  resize_bilinear, traceable_adaptive_avg_pool2d)
from .policy import (ENV_VAR, RECOMPUTE_FFN_BY_DEVICE, ExecutionPolicy,
                     execution_policy, get_policy, recomputes_ffn, set_policy)

__all__ = [
    'ENV_VAR', 'RECOMPUTE_FFN_BY_DEVICE', 'ExecutionPolicy',
    'execution_policy', 'get_policy', 'recomputes_ffn', 'set_policy', 'attention', 'ffn_strategy', 'activation',
    'adaptive_avg_pool2d', 'add_residual', 'resize_bilinear',
    'traceable_adaptive_avg_pool2d'
]
