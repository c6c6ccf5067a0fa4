"""Small functional ops the layers call, each equal to a plain PyTorch
expression (its reference) and computed faster or export-safely where the
policy (:mod:`pvt_mm.execution.policy`) and the situation allow."""
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.onnx.operators

from .policy import get_policy, plain_graph


def add_residual(x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
    """``x + branch``.

    With ``policy.inplace`` the sum is written into ``branch`` (the fresh
    output of a linear, dropout or drop-path, none of which keeps its output
    for backward), so no new full-size tensor is allocated. Addition
    commutes exactly: the result is bit-identical. A ``branch`` of another
    dtype or shape (e.g. bf16 under autocast) takes the out-of-place sum,
    which keeps ``x``'s dtype.
    """
    if (plain_graph() or not get_policy().inplace
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
