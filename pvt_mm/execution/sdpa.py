"""The attention kernel every pvt_mm attention layer calls."""
from typing import Optional

import torch
import torch.nn.functional as F

from .policy import cpu_policy


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
    """
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
