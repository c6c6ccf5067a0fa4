"""Faster ways to run the FFNs (:class:`pvt_mm.models.layers.Mlp` and
its :class:`~pvt_mm.models.layers.ConvFFN`).

The FFN's reference computation is
``drop(fc2(drop(act(depthwise(expand(x))))))`` with ``expand`` = fc1
[-> ReLU] and ``depthwise`` the optional 3x3 depthwise conv. Its hidden map
is 4-8x wider than the tokens, so it is what costs memory and time at
detection sizes. :func:`ffn_strategy` picks, under the policy
(:mod:`pvt_mm.execution.policy`):

* CPU, large maps: bands of rows (:func:`forward_bands`), so the hidden map
  never exists whole; in training through :class:`BandedFFNFunction`, whose
  backward recomputes each band;
* training elsewhere: keep only ``expand``'s output for backward and
  recompute the rest there (:func:`forward_recompute`) where
  :func:`~pvt_mm.execution.policy.recomputes_ffn` says so (by default on
  CPU, and where a backbone is built with ``recompute_ffn=True``);
* inference elsewhere: the activation in place (:func:`forward_whole`).

Each gives the reference result (``tests/execution``). The strategies use
only the module's parts (``fc1``, ``relu``, ``dwconv``, ``act``, ``fc2``,
``drop``, ``expand``, ``depthwise``), never a copy of its weights.
"""
import functools
from typing import Callable, Iterator, List, Optional, Tuple

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from .ops import activation
from .policy import (ExecutionPolicy, get_policy, plain_graph,
                     recomputes_ffn)

HW = Tuple[int, int]
Strategy = Callable[[nn.Module, torch.Tensor, HW], torch.Tensor]


def ffn_params(ffn: nn.Module) -> List[torch.nn.Parameter]:
    """fc1's, the dwconv's and fc2's parameters, in that order."""
    modules = [ffn.fc1, ffn.dwconv, ffn.fc2]
    return [p for m in modules if m is not None for p in m.parameters()]


def records_grad(ffn: nn.Module, x: torch.Tensor) -> bool:
    """Whether this call is recorded for backward."""
    return torch.is_grad_enabled() and (
        x.requires_grad or any(p.requires_grad for p in ffn_params(ffn)))


def band_size(ffn: nn.Module, x: torch.Tensor, hw: HW, grad: bool = False,
              policy: Optional[ExecutionPolicy] = None) -> int:
    """Rows (with the dwconv) or tokens per band for banded CPU execution,
    or 0 to run the whole map at once. ``grad``: the call is recorded for
    backward (see :func:`records_grad`)."""
    policy = policy or get_policy()
    if not policy.cpu_banded_ffn or x.device.type != 'cpu' or plain_graph():
        return 0
    B, N, _ = x.shape
    hidden = ffn.fc1.out_features
    if grad and (torch.is_autocast_enabled('cpu')
                 or (ffn.training and ffn.drop.p > 0)
                 or B * N * hidden * x.element_size()
                 < policy.ffn_train_band_min_bytes):
        return 0
    unit = hw[1] if ffn.dwconv is not None else 1  # tokens per row
    total = hw[0] if ffn.dwconv is not None else N
    unit_bytes = B * unit * hidden * x.element_size()
    size = max(policy.ffn_min_band, policy.ffn_band_bytes // unit_bytes)
    return size if size < total else 0


def ffn_strategy(ffn: nn.Module, x: torch.Tensor,
                 hw: HW) -> Optional[Strategy]:
    """The strategy for this call, ``strategy(ffn, x, hw)``, or ``None``
    for the reference computation."""
    if plain_graph():
        return None
    policy = get_policy()
    grad = records_grad(ffn, x)
    size = band_size(ffn, x, hw, grad, policy)
    if size:
        return functools.partial(
            forward_bands_recorded if grad else forward_bands, size=size)
    if grad:
        recompute = recomputes_ffn(policy, getattr(ffn, 'recompute', None),
                                   x.device.type)
        return forward_recompute if recompute else None
    return forward_whole if policy.inplace else None


def _contract(ffn: nn.Module, h: torch.Tensor, hw: HW) -> torch.Tensor:
    """Everything after ``expand``: [dwconv ->] act -> drop -> fc2 -> drop."""
    return ffn.drop(ffn.fc2(ffn.drop(activation(ffn.act, ffn.depthwise(h, hw)))))


def forward_whole(ffn: nn.Module, x: torch.Tensor, hw: HW) -> torch.Tensor:
    """The whole map at once, the activation in place when allowed."""
    return _contract(ffn, ffn.expand(x), hw)


def forward_recompute(ffn: nn.Module, x: torch.Tensor, hw: HW) -> torch.Tensor:
    """Keep only ``expand``'s output for backward and run the cheap
    dwconv/act again in backward (non-reentrant activation checkpointing,
    which stops once the tensors backward needs are back, so fc2 is not
    re-run): the widest activations of the block are stored once, not two
    or three times. Bit-identical gradients."""
    h = ffn.expand(x)
    if not h.requires_grad:
        return _contract(ffn, h, hw)
    return checkpoint(functools.partial(_contract, ffn), h, hw,
                      use_reentrant=False)


def bands(ffn: nn.Module, hw: HW, num_tokens: int,
          size: int) -> Iterator[Tuple[int, int, int, int]]:
    """``(lo, top, bottom, hi)`` token ranges of each band: tokens
    ``top:bottom`` of the output are computed from ``lo:hi`` of the input
    (with the dwconv, one extra row on each side)."""
    if ffn.dwconv is None:
        for top in range(0, num_tokens, size):
            bottom = min(top + size, num_tokens)
            yield top, top, bottom, bottom
        return
    H, W = hw
    for top in range(0, H, size):
        bottom = min(top + size, H)
        yield (max(top - 1, 0) * W, top * W, bottom * W,
               min(bottom + 1, H) * W)


def band_hidden(ffn: nn.Module, x: torch.Tensor, hw: HW, lo: int, top: int,
                bottom: int, hi: int) -> torch.Tensor:
    """Hidden activations (after act and dropout) of output tokens
    ``top:bottom``, computed from input tokens ``lo:hi``. The dwconv sees
    the band's halo rows as its neighbours and zero padding beyond them; the
    halo rows' own outputs are dropped, so every kept value is the one the
    whole map gives."""
    width = hw[1] if ffn.dwconv is not None else 1
    h = ffn.depthwise(ffn.expand(x[:, lo:hi]), ((hi - lo) // width, width))
    return ffn.drop(activation(ffn.act, h))[:, top - lo:bottom - lo]


def forward_bands(ffn: nn.Module, x: torch.Tensor, hw: HW,
                  size: int) -> torch.Tensor:
    """The FFN over bands of ``size`` rows (or tokens), so the hidden map
    never exists whole: every band's temporaries come from freed memory
    instead of fresh pages, and stay in cache."""
    B, N, _ = x.shape
    out = x.new_empty(B, N, ffn.fc2.out_features)
    for lo, top, bottom, hi in bands(ffn, hw, N, size):
        out[:, top:bottom] = ffn.drop(ffn.fc2(
            band_hidden(ffn, x, hw, lo, top, bottom, hi)))
    return out


def backward_bands(ffn: nn.Module, x: torch.Tensor, grad: torch.Tensor,
                   hw: HW, size: int, need_x: bool) -> list:
    """Gradients of :func:`forward_bands` w.r.t. ``x`` (``None`` unless
    ``need_x``) and :func:`ffn_params`, band by band: each band's hidden
    activations are recomputed with autograd, fc2's gradients are formed
    directly from them, and the halo rows' input gradients are summed over
    the two bands that read them."""
    *inner_all, w2, b2 = ffn_params(ffn)
    inner = [p for p in inner_all if p.requires_grad]
    grad_x = torch.zeros_like(x) if need_x else None
    grad_w2 = torch.zeros_like(w2) if w2.requires_grad else None
    grad_b2 = torch.zeros_like(b2) if b2.requires_grad else None
    grad_inner = [torch.zeros_like(p) for p in inner]
    for lo, top, bottom, hi in bands(ffn, hw, x.shape[1], size):
        x_band = x[:, lo:hi].detach().requires_grad_(need_x)
        with torch.enable_grad():
            hidden = band_hidden(ffn, x_band, hw, 0, top - lo, bottom - lo,
                                 hi - lo)
        g = grad[:, top:bottom]
        if grad_w2 is not None:
            grad_w2.addmm_(g.flatten(0, 1).t(), hidden.detach().flatten(0, 1))
        if grad_b2 is not None:
            grad_b2.add_(g.sum((0, 1)))
        inputs = ([x_band] if need_x else []) + inner
        if not inputs:
            continue
        got = list(torch.autograd.grad(hidden, inputs, g @ w2))
        if need_x:
            grad_x[:, lo:hi].add_(got.pop(0))
        for acc, g_p in zip(grad_inner, got):
            acc.add_(g_p)
    grads_inner = iter(grad_inner)
    return [grad_x] + [next(grads_inner) if p.requires_grad else None
                       for p in inner_all] + [grad_w2, grad_b2]


class BandedFFNFunction(torch.autograd.Function):
    """Autograd for :func:`forward_bands` when training on CPU.

    Forward keeps only the FFN's input; backward recomputes each band's
    hidden activations and runs its backward before moving to the next
    band, so neither pass ever holds the hidden map or its gradients whole.
    The FFN's parameters are inputs so that their gradients reach them
    through autograd.
    """

    @staticmethod
    def forward(ctx, x, ffn, hw, size, *params):
        ctx.ffn, ctx.hw, ctx.size = ffn, hw, size
        # saved for autograd's in-place modification check; backward
        # computes through the module, which holds the same tensors
        ctx.save_for_backward(x, *params)
        return forward_bands(ffn, x, hw, size=size)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x = ctx.saved_tensors[0]
        grads = backward_bands(ctx.ffn, x, grad, ctx.hw, ctx.size,
                               ctx.needs_input_grad[0])
        return (grads[0], None, None, None, *grads[1:])


def forward_bands_recorded(ffn: nn.Module, x: torch.Tensor, hw: HW,
                           size: int) -> torch.Tensor:
    """:func:`forward_bands` with gradients (:class:`BandedFFNFunction`)."""
    return BandedFFNFunction.apply(x, ffn, hw, size, *ffn_params(ffn))
