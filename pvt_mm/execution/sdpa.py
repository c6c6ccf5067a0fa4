"""The attention kernel every pvt_mm attention layer calls.

In PyTorch it is ``F.scaled_dot_product_attention`` (fused flash attention
on CPU and CUDA), with query groups for a multi-core CPU backward
(:func:`query_splits`).

In ONNX, torch's TorchScript exporter writes that call as ``MatMul ->
Softmax -> MatMul``, and ONNX Runtime then materialises the scores of every
block (67,200 x 1,050 floats in PVTv2-B2's first stage at 800x1333). Inside
``with onnx_attention('ms_mha'):`` an export records each attention as one
fused operator instead (:data:`ONNX_KERNELS`); outside it, and whenever no
ONNX export is running, nothing changes.
"""
import contextlib
from typing import Iterator, Optional

import torch
import torch.nn.functional as F

from .policy import cpu_policy

#: ONNX kernels :func:`onnx_attention` can record, name -> description.
ONNX_KERNELS = {
    'standard': 'MatMul -> Softmax -> MatMul (any ONNX runtime; the default)',
    'ms_mha': "ONNX Runtime's contrib com.microsoft::MultiHeadAttention "
              '(fused; ONNX Runtime only)',
}

#: the kernel ONNX exports record (None: the exporter's own, 'standard')
_onnx_kernel: Optional[str] = None


@contextlib.contextmanager
def onnx_attention(kernel: str = 'ms_mha') -> Iterator[str]:
    """While an ONNX export runs in this block, record every :func:`attention`
    as ``kernel`` (a key of :data:`ONNX_KERNELS`); eager calls are unchanged.

    ``'ms_mha'``: ONNX Runtime's ``com.microsoft::MultiHeadAttention``, query
    ``(B, S, N*d)`` and key / value ``(B, L, N*d)`` with ``num_heads=N`` and
    the explicit ``scale`` (benchmarks/bench_ort_attention.py compares it
    with the unfused graph and the standard ``Attention`` of opset 23; its
    CPU kernel never holds the whole ``(S, L)`` score matrix). The file then
    runs in ONNX Runtime only."""
    global _onnx_kernel
    if kernel not in ONNX_KERNELS:
        raise ValueError(f'onnx_attention({kernel!r}): choose one of '
                         f'{sorted(ONNX_KERNELS)}')
    previous = _onnx_kernel
    _onnx_kernel = None if kernel == 'standard' else kernel
    try:
        yield kernel
    finally:
        _onnx_kernel = previous


class _MultiHeadAttention(torch.autograd.Function):
    """``F.scaled_dot_product_attention`` on ``(B, N, S, d)`` tensors, which
    the TorchScript exporter records as one ``com.microsoft::
    MultiHeadAttention`` (inference only: no backward)."""

    @staticmethod
    def forward(ctx, q, k, v, num_heads: int, head_size: int, scale: float):
        return F.scaled_dot_product_attention(q, k, v, scale=scale)

    @staticmethod
    def symbolic(g, q, k, v, num_heads: int, head_size: int, scale: float):
        def tokens(t):  # (B, N, S, d) -> (B, S, N * d)
            t = g.op('Transpose', t, perm_i=[0, 2, 1, 3])
            return g.op('Reshape', t, g.op(
                'Constant', value_t=torch.tensor([0, 0, -1])))
        out = g.op('com.microsoft::MultiHeadAttention', tokens(q), tokens(k),
                   tokens(v), num_heads_i=num_heads, scale_f=scale)
        # the output's type in the file (ONNX's shape inference does not
        # know contrib operators; ONNX Runtime's quantization tools need it)
        from torch.onnx import symbolic_helper
        sizes = symbolic_helper._get_tensor_sizes(q) or [None] * 4
        out.setType(q.type().with_sizes(
            [sizes[0], sizes[2], num_heads * head_size]))
        out = g.op('Reshape', out, g.op('Constant', value_t=torch.tensor(
            [0, 0, num_heads, head_size])))
        # the layers merge the heads right after (transpose + reshape):
        # ONNX Runtime cancels the two transposes
        return g.op('Transpose', out, perm_i=[0, 2, 1, 3])


def _onnx_fused(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                scale: Optional[float]) -> torch.Tensor:
    N, d = int(q.shape[1]), int(q.shape[3])
    if int(k.shape[1]) != N or int(v.shape[3]) != d:
        raise ValueError(f'onnx_attention({_onnx_kernel!r}) records q, k, v '
                         f'with the same heads and head size, not '
                         f'{tuple(q.shape)}, {tuple(k.shape)}, '
                         f'{tuple(v.shape)}')
    scale = float(d ** -0.5 if scale is None else scale)
    return _MultiHeadAttention.apply(q, k, v, N, d, scale)


def query_splits(q: torch.Tensor) -> int:
    """How many groups :func:`attention` splits the queries into (1: none).

    PyTorch's CPU flash-attention backward runs one (batch, head) pair per
    thread, so a 1-head stage at batch 1 would train on a single core. With
    ``policy.cpu_split_queries``, when gradients are recorded on CPU with
    fewer pairs than threads, the queries are split into that many groups
    (a divisor of the number of queries)."""
    policy = cpu_policy(q)
    if (policy is None or not policy.cpu_split_queries
            or not (torch.is_grad_enabled() and q.requires_grad)):
        return 1
    B, H, N = q.shape[:3]
    threads = torch.get_num_threads()
    for splits in range(-(-threads // (B * H)), 1, -1):
        if N % splits == 0:
            return splits
    return 1


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              dropout_p: float = 0., scale: Optional[float] = None) -> torch.Tensor:
    """``F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p,
    scale=scale)`` on ``(B, heads, N, d)`` tensors.

    When :func:`query_splits` says so, the query groups become extra batch
    entries (views; k and v are repeated, they are small after spatial
    reduction / stride-2 projection). Every query still attends to all
    keys: the same result, computed by more threads in backward.

    While an ONNX export runs inside :func:`onnx_attention`, the call is
    recorded as that fused kernel (inference: ``dropout_p`` must be 0).
    """
    if _onnx_kernel is not None and torch.onnx.is_in_onnx_export():
        if dropout_p:
            raise ValueError('ONNX export records inference: attention '
                             f'dropout_p={dropout_p} (put the model in eval '
                             f'mode)')
        return _onnx_fused(q, k, v, scale)
    splits = query_splits(q)
    if splits == 1:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p,
                                              scale=scale)
    B, H, N, d = q.shape

    def repeat(t: torch.Tensor) -> torch.Tensor:
        return t.unsqueeze(1).expand(B, splits, *t.shape[1:]).flatten(0, 1)

    q = q.unflatten(2, (splits, N // splits)).transpose(1, 2).flatten(0, 1)
    out = F.scaled_dot_product_attention(q, repeat(k), repeat(v),
                                         dropout_p=dropout_p, scale=scale)
    return out.unflatten(0, (B, splits)).transpose(1, 2).flatten(2, 3)
