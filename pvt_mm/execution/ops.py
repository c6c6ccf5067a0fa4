"""Small functional ops the layers call, each equal to a plain PyTorch
expression (its reference) and computed faster or export-safely where the
policy (:mod:`pvt_mm.execution.policy`) and the situation allow."""
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.onnx.operators

from .policy import get_policy, plain_graph


def add_residual(x: torch.Tensor, branch: torch.Tensor,
                 keep: Optional[torch.Tensor] = None,
                 keep_prob: float = 1.) -> torch.Tensor:
    """``x + branch``, or with stochastic depth
    ``x + branch * keep.mul(1 / keep_prob)``: ``keep`` is a per-sample 0/1
    mask of shape ``(B, 1, ..., 1)`` (kept samples are scaled by
    ``1 / keep_prob``, as :class:`pvt_mm.models.layers.DropPath` does).

    Without ``keep``, with ``policy.inplace`` the sum is written into
    ``branch`` (the fresh output of a linear, dropout or drop-path, none of
    which keeps its output for backward), so no new full-size tensor is
    allocated. Addition commutes exactly: the result is bit-identical. A
    ``branch`` that autograd records as a view (of a linear's 2-D output,
    say) takes the out-of-place sum: an in-place op on it costs a copy of
    the whole base and a clone in backward. So does a ``branch`` of another
    dtype or shape (e.g. bf16 under autocast), which keeps ``x``'s dtype.

    With ``keep`` and ``policy.fused_drop_path``, it is one
    ``torch.addcmul`` (scale, product and sum in one operator; two small
    ones in backward) instead of three operators forward and one backward:
    a training step at small sizes is bound by operator launches
    (docs/benchmarks.md, "Operator counts"). It computes
    ``x + (1 / keep_prob) * branch * keep``, the same products in another
    order: equal up to float rounding.
    """
    policy = None if plain_graph() else get_policy()
    if keep is not None:
        if policy is not None and policy.fused_drop_path:
            return torch.addcmul(x, branch, keep, value=1. / keep_prob)
        return x + branch * keep.mul(1. / keep_prob)
    if (policy is None or not policy.inplace
            or (branch.requires_grad and branch._base is not None)
            or branch.dtype != x.dtype or branch.shape != x.shape):
        return x + branch
    return branch.add_(x)


def activation(act: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``act(x)``; with ``policy.inplace`` a GELU overwrites ``x`` when no
    gradient is recorded (in training GELU keeps its input for backward)."""
    if (isinstance(act, nn.GELU) and not torch.is_grad_enabled()
            and not plain_graph() and get_policy().inplace):
        return torch.ops.aten.gelu_(x, approximate=act.approximate)
    return act(x)


def _pool_matrix(n: torch.Tensor, out: int, like: torch.Tensor) -> torch.Tensor:
    """``(out, n)`` weights of adaptive average pooling along one axis."""
    i = torch.arange(out, device=like.device)
    start = torch.div(i * n, out, rounding_mode='floor')
    end = torch.div((i + 1) * n + out - 1, out, rounding_mode='floor')
    j = torch.arange(n, device=like.device)
    inside = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])
    return inside.to(like.dtype) / (end - start)[:, None].to(like.dtype)


def traceable_adaptive_avg_pool2d(x: torch.Tensor, out: int) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, out)`` as two matmuls whose weights are
    computed from the traced input shape, so ONNX export keeps H and W
    dynamic (the ONNX exporter cannot export adaptive pooling of a map of
    unknown size)."""
    hw = torch.onnx.operators.shape_as_tensor(x)
    return (_pool_matrix(hw[2], out, x) @ x
            @ _pool_matrix(hw[3], out, x).transpose(0, 1))


def adaptive_avg_pool2d(x: torch.Tensor, out: int) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, out)``; while tracing for export, the
    shape-generic form :func:`traceable_adaptive_avg_pool2d`."""
    if torch.jit.is_tracing():
        return traceable_adaptive_avg_pool2d(x, out)
    return F.adaptive_avg_pool2d(x, out)


def resize_bilinear(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``F.interpolate(x, size, mode='bilinear', align_corners=False)``.

    Resizing to the map's own size is exact, so then ``x`` itself is
    returned, except while tracing for export: the graph must work for
    every input size, so the resize is always recorded.
    """
    if tuple(size) == tuple(x.shape[-2:]) and not torch.jit.is_tracing():
        return x
    return F.interpolate(x, size=tuple(size), mode='bilinear',
                         align_corners=False)
