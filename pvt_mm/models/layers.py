"""Building blocks shared by PVTv1, PVTv2 and CvT.

Token layout
------------
Inside a stage, tokens are a ``(B, N, C)`` tensor whose spatial tokens are in
row-major ``(H, W)`` order, optionally preceded by ``num_prefix`` extra tokens
(the class token). That is the same memory as a channels-last ``(B, H, W, C)``
feature map, so :func:`tokens_to_nchw` and :func:`nchw_to_tokens` are views: a
convolution sees a channels-last NCHW tensor and returns one, and no
NCHW <-> token transposes are ever copied.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.onnx.operators
import torch.utils.checkpoint
from torch.utils.checkpoint import checkpoint as _checkpoint
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule

from pvt_mm.registry import MODELS

HW = Tuple[int, int]


def tokens_to_nchw(tokens: torch.Tensor, hw: HW) -> torch.Tensor:
    """``(B, H*W, C)`` tokens -> ``(B, C, H, W)`` channels-last view."""
    B, _, C = tokens.shape
    return tokens.reshape(B, hw[0], hw[1], C).permute(0, 3, 1, 2)


def nchw_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, H*W, C)``; a view for channels-last input."""
    B, C = x.shape[:2]
    return x.permute(0, 2, 3, 1).reshape(B, -1, C)


@MODELS.register_module()
class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``, the GELU approximation CvT was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def build_act(act_cfg: dict) -> nn.Module:
    """Build an activation from ``act_cfg`` (``GELU``, ``ReLU``, ``QuickGELU``...).

    Built in the ``pvt_mm`` scope whatever scope a runner set (mmdet, mmseg,
    mmpretrain cannot see ``QuickGELU``); mmcv's activations are found in the
    parent registry."""
    with MODELS.switch_scope_and_registry('pvt_mm') as registry:
        return registry.build(dict(act_cfg))


class PatchEmbed(BaseModule):
    """Convolutional patch embedding followed by LayerNorm.

    Non-overlapping for PVTv1 (kernel == stride), overlapping for PVTv2 and
    CvT (kernel > stride, padding ``kernel // 2``). Returns tokens and the
    ``(H, W)`` of the map they came from.
    """

    def __init__(self,
                 in_channels: int,
                 embed_dims: int,
                 kernel_size: int,
                 stride: int,
                 padding: int = 0,
                 norm_eps: float = 1e-5,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.proj = nn.Conv2d(
            in_channels, embed_dims, kernel_size, stride=stride, padding=padding)
        self.norm = nn.LayerNorm(embed_dims, eps=norm_eps)

    def out_size(self, size: int) -> int:
        """Spatial size of the output for an input side of ``size``."""
        k, s, p = self.proj.kernel_size[0], self.proj.stride[0], self.proj.padding[0]
        return (size + 2 * p - k) // s + 1

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, HW]:
        x = self.proj(x.contiguous(memory_format=torch.channels_last))
        hw = (x.shape[2], x.shape[3])
        return self.norm(nchw_to_tokens(x)), hw


def _split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``(B, N, C)`` -> ``(B, heads, N, C // heads)`` (a view)."""
    B, N, C = x.shape
    return x.reshape(B, N, num_heads, C // num_heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``(B, heads, N, d)`` -> ``(B, N, heads * d)``."""
    B, H, N, d = x.shape
    return x.transpose(1, 2).reshape(B, N, H * d)


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


def _query_splits(q: torch.Tensor) -> int:
    """How many groups :func:`attention` splits the queries into (1: none)."""
    if (not (torch.is_grad_enabled() and q.requires_grad)
            or q.device.type != 'cpu' or torch.jit.is_tracing()
            or torch.compiler.is_compiling()):
        return 1
    B, H, N = q.shape[:3]
    threads = torch.get_num_threads()
    for splits in range(-(-threads // (B * H)), 1, -1):
        if N % splits == 0:
            return splits
    return 1


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              dropout_p: float = 0., scale: Optional[float] = None) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` on ``(B, heads, N, d)`` views.

    PyTorch's CPU flash-attention backward runs one (batch, head) pair per
    thread, so a 1-head stage at batch 1 would train on a single core. When
    gradients are recorded on CPU with fewer pairs than threads, the queries
    are split into groups that become extra batch entries (views; k and v
    are repeated, they are small after spatial reduction / stride-2
    projection). Every query still attends to all keys: same result.
    """
    splits = _query_splits(q)
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


def _check_heads(dims: int, num_heads: int) -> None:
    if dims % num_heads:
        raise ValueError(f'embedding dims {dims} are not divisible by '
                         f'num_heads {num_heads}; pick a head count that '
                         f'divides the stage width')


class SRAttention(BaseModule):
    """Spatial-reduction attention (PVTv1, PVTv2, PVTv2-Li).

    Queries come from every token; keys and values from a reduced map:
    a ``sr_ratio`` x ``sr_ratio`` strided conv + LayerNorm (``sr_ratio > 1``),
    or, with ``linear=True``, an adaptive average pool to
    ``pool_size`` x ``pool_size`` + 1x1 conv + LayerNorm + GELU (linear SRA,
    cost linear in the number of tokens). Prefix tokens (a class token) take
    part unreduced. Attention runs through ``F.scaled_dot_product_attention``.
    """

    def __init__(self,
                 dims: int,
                 num_heads: int,
                 sr_ratio: int = 1,
                 linear: bool = False,
                 pool_size: int = 7,
                 qkv_bias: bool = True,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.,
                 sr_norm_eps: float = 1e-5,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        _check_heads(dims, num_heads)
        self.num_heads = num_heads
        self.linear = linear
        self.attn_drop = attn_drop
        self.q = nn.Linear(dims, dims, bias=qkv_bias)
        self.kv = nn.Linear(dims, dims * 2, bias=qkv_bias)
        self.proj = nn.Linear(dims, dims)
        self.proj_drop = nn.Dropout(proj_drop)
        if linear:
            self.pool = nn.AdaptiveAvgPool2d(pool_size)
            self.sr = nn.Conv2d(dims, dims, kernel_size=1)
            self.norm = nn.LayerNorm(dims, eps=sr_norm_eps)
            self.act = nn.GELU()
        elif sr_ratio > 1:
            self.sr = nn.Conv2d(dims, dims, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dims, eps=sr_norm_eps)
        else:
            self.sr = None

    def reduce(self, x: torch.Tensor, hw: HW, num_prefix: int) -> torch.Tensor:
        """Tokens that keys and values are computed from."""
        if self.sr is None:
            return x
        fmap = tokens_to_nchw(x[:, num_prefix:], hw)
        if self.linear:
            fmap = (traceable_adaptive_avg_pool2d(fmap, self.pool.output_size)
                    if torch.jit.is_tracing() else self.pool(fmap))
        y = self.norm(nchw_to_tokens(self.sr(fmap)))
        if self.linear:
            y = self.act(y)
        return torch.cat([x[:, :num_prefix], y], dim=1) if num_prefix else y

    def forward(self, x: torch.Tensor, hw: HW, num_prefix: int = 0) -> torch.Tensor:
        q = _split_heads(self.q(x), self.num_heads)
        kv_in = self.reduce(x, hw, num_prefix)
        B, M, _ = kv_in.shape
        k, v = self.kv(kv_in).reshape(B, M, 2, self.num_heads, -1).permute(
            2, 0, 3, 1, 4).unbind(0)
        out = attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.)
        return self.proj_drop(self.proj(_merge_heads(out)))


class ConvProjection(BaseModule):
    """CvT's convolutional projection: depthwise conv + BatchNorm."""

    def __init__(self, dims: int, kernel_size: int = 3, stride: int = 1,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.conv = nn.Conv2d(dims, dims, kernel_size, stride=stride,
                              padding=kernel_size // 2, groups=dims, bias=False)
        self.bn = nn.BatchNorm2d(dims)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return nchw_to_tokens(self.bn(self.conv(fmap)))


class ConvProjAttention(BaseModule):
    """Convolutional-projection attention (CvT).

    q, k and v each come from a depthwise conv + BN over the token map (stride
    ``stride_q`` for q, ``stride_kv`` for k/v) and a linear layer; prefix
    tokens skip the conv. Scores are scaled by ``dims ** -0.5`` (the full
    width, as CvT was trained) unless ``scale`` is given.
    """

    def __init__(self,
                 dims: int,
                 num_heads: int,
                 qkv_bias: bool = True,
                 kernel_size: int = 3,
                 stride_q: int = 1,
                 stride_kv: int = 2,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.,
                 scale: Optional[float] = None,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        _check_heads(dims, num_heads)
        self.num_heads = num_heads
        self.attn_drop = attn_drop
        self.scale = dims ** -0.5 if scale is None else scale
        self.conv_proj_q = ConvProjection(dims, kernel_size, stride_q)
        self.conv_proj_k = ConvProjection(dims, kernel_size, stride_kv)
        self.conv_proj_v = ConvProjection(dims, kernel_size, stride_kv)
        self.proj_q = nn.Linear(dims, dims, bias=qkv_bias)
        self.proj_k = nn.Linear(dims, dims, bias=qkv_bias)
        self.proj_v = nn.Linear(dims, dims, bias=qkv_bias)
        self.proj = nn.Linear(dims, dims)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, hw: HW, num_prefix: int = 0) -> torch.Tensor:
        prefix = x[:, :num_prefix]
        fmap = tokens_to_nchw(x[:, num_prefix:], hw)

        def project(conv: ConvProjection, linear: nn.Linear) -> torch.Tensor:
            t = conv(fmap)
            if num_prefix:
                t = torch.cat([prefix, t], dim=1)
            return _split_heads(linear(t), self.num_heads)

        q = project(self.conv_proj_q, self.proj_q)
        k = project(self.conv_proj_k, self.proj_k)
        v = project(self.conv_proj_v, self.proj_v)
        out = attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.,
                        scale=self.scale)
        return self.proj_drop(self.proj(_merge_heads(out)))


#: Banded CPU execution of :class:`ConvFFN`: hidden-map bytes per band and
#: the fewest rows (or tokens) a band may have. Bands of a few MiB are
#: served from memory the allocator already holds (larger ones are mapped
#: fresh, and page faults then cost more than the FFN's arithmetic).
FFN_BAND_BYTES = 4 << 20
FFN_MIN_BAND = 8
#: Training runs the FFN in bands only when its whole hidden map would take
#: at least this many bytes: glibc maps allocations above 32 MiB fresh from
#: the kernel, smaller ones are reused, and banded training recomputes fc1.
FFN_TRAIN_BAND_MIN_BYTES = 32 << 20


def _act_maybe_inplace(act: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``act(x)``, overwriting ``x`` when no gradient is being recorded (a
    GELU keeps its input for backward, so training uses the copying op)."""
    if isinstance(act, nn.GELU) and not torch.is_grad_enabled():
        return torch.ops.aten.gelu_(x, approximate=act.approximate)
    return act(x)


def _recompute_in_backward(fn, *args):
    """``fn(*args)`` keeping only ``args`` for backward, where ``fn`` is run
    again (non-reentrant activation checkpointing; it stops recomputing once
    the tensors backward needs are back, so a final linear is not re-run).
    Bound at import, apart from the per-block ``with_cp`` checkpoint."""
    return _checkpoint(fn, *args, use_reentrant=False)


def _add_residual(x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
    """``x + branch``, summed into ``branch`` (the fresh output of a linear,
    dropout or drop-path, none of which keeps its output for backward), so
    no new full-size tensor is allocated. Addition commutes exactly, so the
    result is bit-identical; a ``branch`` of another dtype or shape (e.g.
    bf16 under autocast) uses the out-of-place sum to keep ``x``'s dtype."""
    if branch.dtype == x.dtype and branch.shape == x.shape:
        return branch.add_(x)
    return x + branch


class _BandedFFNFunction(torch.autograd.Function):
    """Autograd for :meth:`ConvFFN._forward_bands` when training on CPU.

    Forward keeps only the FFN's input; backward recomputes each band's
    hidden activations (fc1 [-> ReLU] [-> dwconv] -> act) and runs its
    backward before moving to the next band, so neither pass ever holds the
    4-8x wider hidden map or its gradients whole. The FFN's parameters are
    inputs so that their gradients reach them through autograd.
    """

    @staticmethod
    def forward(ctx, x, ffn, hw, size, *params):
        ctx.ffn, ctx.hw, ctx.size = ffn, hw, size
        # saved for autograd's in-place modification check; backward
        # computes through the module, which holds the same tensors
        ctx.save_for_backward(x, *params)
        return ffn._forward_bands(x, hw, size)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x = ctx.saved_tensors[0]
        grads = ctx.ffn._backward_bands(x, grad, ctx.hw, ctx.size,
                                        ctx.needs_input_grad[0])
        return (grads[0], None, None, None, *grads[1:])


class ConvFFN(BaseModule):
    """Feed-forward network: fc1 [-> ReLU] [-> 3x3 depthwise conv] -> act -> fc2.

    Plain MLP for PVTv1/CvT, with the depthwise conv for PVTv2, and with the
    extra ReLU after fc1 for PVTv2-Li.

    The hidden map is 4-8x wider than the tokens, so it is what costs memory
    and time at detection sizes. On CPU, large maps run in bands of rows
    (see :meth:`_forward_bands`; in training, :class:`_BandedFFNFunction`
    recomputes each band in backward). Elsewhere training stores only fc1's
    output for backward and recomputes the rest. None of this changes the
    result.
    """

    def __init__(self,
                 dims: int,
                 hidden_dims: int,
                 dwconv: bool = False,
                 extra_relu: bool = False,
                 act_cfg: dict = dict(type='GELU'),
                 drop: float = 0.,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.fc1 = nn.Linear(dims, hidden_dims)
        self.relu = nn.ReLU(inplace=True) if extra_relu else None
        self.dwconv = nn.Conv2d(hidden_dims, hidden_dims, 3, padding=1,
                                groups=hidden_dims) if dwconv else None
        self.act = build_act(act_cfg)
        self.fc2 = nn.Linear(hidden_dims, dims)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, hw: HW, num_prefix: int = 0) -> torch.Tensor:
        if self.dwconv is not None and num_prefix:
            raise ValueError('ConvFFN with a depthwise conv cannot take '
                             'prefix (class) tokens')
        grad = self._records_grad(x)
        band = self._band_size(x, hw, grad)
        if band and grad:
            return _BandedFFNFunction.apply(x, self, hw, band,
                                            *self._ffn_params())
        if band:
            return self._forward_bands(x, hw, band)
        x = self._expand(x)
        if grad and x.requires_grad:
            # Keep only fc1's output for backward and recompute the cheap
            # dwconv/act in backward: the widest activations of the block
            # are not stored twice or three times. Bit-identical gradients.
            return _recompute_in_backward(self._contract, x, hw)
        return self._contract(x, hw)

    def _ffn_params(self) -> list:
        """fc1's, the dwconv's and fc2's parameters, in that order."""
        modules = [self.fc1, self.dwconv, self.fc2]
        return [p for m in modules if m is not None for p in m.parameters()]

    def _records_grad(self, x: torch.Tensor) -> bool:
        """Whether this call is recorded for backward (and not traced)."""
        return (torch.is_grad_enabled() and not torch.jit.is_tracing()
                and (x.requires_grad
                     or any(p.requires_grad for p in self._ffn_params())))

    def _expand(self, x: torch.Tensor) -> torch.Tensor:
        """fc1 [-> ReLU]."""
        x = self.fc1(x)
        return self.relu(x) if self.relu is not None else x

    def _mix(self, x: torch.Tensor, hw: HW) -> torch.Tensor:
        """[dwconv ->] act -> dropout, on the hidden tokens."""
        if self.dwconv is not None:
            x = nchw_to_tokens(self.dwconv(tokens_to_nchw(x, hw)))
        return self.drop(_act_maybe_inplace(self.act, x))

    def _contract(self, x: torch.Tensor, hw: HW) -> torch.Tensor:
        """[dwconv ->] act -> dropout -> fc2 -> dropout."""
        return self.drop(self.fc2(self._mix(x, hw)))

    def _band_size(self, x: torch.Tensor, hw: HW, grad: bool = False) -> int:
        """Rows (with the dwconv) or tokens per band for banded CPU
        execution, or 0 to run the whole map at once. ``grad``: the call is
        recorded for backward (see :meth:`_records_grad`)."""
        if (x.device.type != 'cpu' or torch.jit.is_tracing()
                or torch.compiler.is_compiling()):
            return 0
        B, N, _ = x.shape
        if grad and (torch.is_autocast_enabled('cpu')
                     or (self.training and self.drop.p > 0)
                     or B * N * self.fc1.out_features * x.element_size()
                     < FFN_TRAIN_BAND_MIN_BYTES):
            return 0
        unit = hw[1] if self.dwconv is not None else 1  # tokens per row
        total = hw[0] if self.dwconv is not None else N
        unit_bytes = B * unit * self.fc1.out_features * x.element_size()
        size = max(FFN_MIN_BAND, FFN_BAND_BYTES // unit_bytes)
        return size if size < total else 0

    def _bands(self, hw: HW, num_tokens: int, size: int):
        """``(lo, top, bottom, hi)`` token ranges of each band: tokens
        ``top:bottom`` of the output are computed from ``lo:hi`` of the
        input (with the dwconv, one extra row on each side)."""
        if self.dwconv is None:
            for top in range(0, num_tokens, size):
                bottom = min(top + size, num_tokens)
                yield top, top, bottom, bottom
            return
        H, W = hw
        for top in range(0, H, size):
            bottom = min(top + size, H)
            yield (max(top - 1, 0) * W, top * W, bottom * W,
                   min(bottom + 1, H) * W)

    def _band_hidden(self, x: torch.Tensor, hw: HW, lo: int, top: int,
                     bottom: int, hi: int) -> torch.Tensor:
        """Hidden activations (after act and dropout) of output tokens
        ``top:bottom``, computed from input tokens ``lo:hi``. The dwconv
        sees the band's halo rows as its neighbours and zero padding beyond
        them; the halo rows' own outputs are dropped, so every kept value is
        the one the whole map gives."""
        width = hw[1] if self.dwconv is not None else 1
        hidden = self._mix(self._expand(x[:, lo:hi]), ((hi - lo) // width, width))
        return hidden[:, top - lo:bottom - lo]

    def _forward_bands(self, x: torch.Tensor, hw: HW, size: int) -> torch.Tensor:
        """The FFN over bands of ``size`` rows (or tokens), so the 4-8x wider
        hidden map never exists whole: every band's temporaries come from
        freed memory instead of fresh pages, and stay in cache."""
        B, N, _ = x.shape
        out = x.new_empty(B, N, self.fc2.out_features)
        for lo, top, bottom, hi in self._bands(hw, N, size):
            out[:, top:bottom] = self.drop(self.fc2(
                self._band_hidden(x, hw, lo, top, bottom, hi)))
        return out

    def _backward_bands(self, x: torch.Tensor, grad: torch.Tensor, hw: HW,
                        size: int, need_x: bool) -> list:
        """Gradients of :meth:`_forward_bands` w.r.t. ``x`` (``None`` unless
        ``need_x``) and :meth:`_ffn_params`, band by band: each band's hidden
        activations are recomputed with autograd, fc2's gradients are
        formed directly from them, and the halo rows' input gradients are
        summed over the two bands that read them."""
        *inner_all, w2, b2 = self._ffn_params()
        inner = [p for p in inner_all if p.requires_grad]
        grad_x = torch.zeros_like(x) if need_x else None
        grad_w2 = torch.zeros_like(w2) if w2.requires_grad else None
        grad_b2 = torch.zeros_like(b2) if b2.requires_grad else None
        grad_inner = [torch.zeros_like(p) for p in inner]
        for lo, top, bottom, hi in self._bands(hw, x.shape[1], size):
            x_band = x[:, lo:hi].detach().requires_grad_(need_x)
            with torch.enable_grad():
                hidden = self._band_hidden(x_band, hw, 0, top - lo,
                                           bottom - lo, hi - lo)
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


class Block(BaseModule):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, ``x + mlp(norm2(x))``."""

    def __init__(self,
                 dims: int,
                 attn: nn.Module,
                 mlp: nn.Module,
                 drop_path: float = 0.,
                 norm_eps: float = 1e-6,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.norm1 = nn.LayerNorm(dims, eps=norm_eps)
        self.attn = attn
        self.norm2 = nn.LayerNorm(dims, eps=norm_eps)
        self.mlp = mlp
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, hw: HW, num_prefix: int = 0) -> torch.Tensor:
        x = _add_residual(x, self.drop_path(self.attn(self.norm1(x), hw, num_prefix)))
        return _add_residual(x, self.drop_path(self.mlp(self.norm2(x), hw, num_prefix)))


class Stage(BaseModule):
    """One pyramid stage: patch embedding [+ position embedding]
    [+ class token] -> blocks [-> norm].

    Args:
        patch_embed: the stage's :class:`PatchEmbed`.
        blocks: the stage's :class:`Block` s.
        norm_eps: eps of the stage-output LayerNorm; ``None`` for no norm.
        pos_shape: ``(h, w)`` grid of a learned absolute position embedding
            (PVTv1), bilinearly resized to the actual grid; ``None`` for none.
        with_cls_token: prepend a class token (one prefix token).
        cls_pos_embed: give the class token its own position embedding.
        drop_rate: dropout after the embeddings.
        with_cp: activation checkpointing per block while training.
    """

    def __init__(self,
                 patch_embed: PatchEmbed,
                 blocks: Sequence[Block],
                 norm_eps: Optional[float] = None,
                 pos_shape: Optional[HW] = None,
                 with_cls_token: bool = False,
                 cls_pos_embed: bool = False,
                 drop_rate: float = 0.,
                 with_cp: bool = False,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        dims = patch_embed.proj.out_channels
        self.patch_embed = patch_embed
        self.pos_shape = tuple(pos_shape) if pos_shape is not None else None
        if pos_shape is not None:
            self.pos_embed = nn.Parameter(
                torch.zeros(1, pos_shape[0] * pos_shape[1], dims))
        if with_cls_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dims))
            if cls_pos_embed:
                self.cls_pos_embed = nn.Parameter(torch.zeros(1, 1, dims))
        self.num_prefix = int(with_cls_token)
        self.drop = nn.Dropout(drop_rate)
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(dims, eps=norm_eps) if norm_eps else None
        self.with_cp = with_cp

    def resized_pos_embed(self, hw: HW) -> torch.Tensor:
        """The position embedding bilinearly resized to the ``hw`` grid."""
        # While tracing (ONNX export) always resize: the graph must work
        # for every input size, and resizing to the same grid is exact.
        if tuple(hw) == self.pos_shape and not torch.jit.is_tracing():
            return self.pos_embed
        grid = tokens_to_nchw(self.pos_embed, self.pos_shape)
        grid = F.interpolate(grid, size=hw, mode='bilinear', align_corners=False)
        return nchw_to_tokens(grid)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, HW]:
        x, hw = self.patch_embed(x)
        if self.pos_shape is not None:
            x = x + self.resized_pos_embed(hw)
        if self.num_prefix:
            cls = self.cls_token
            if hasattr(self, 'cls_pos_embed'):
                cls = cls + self.cls_pos_embed
            x = torch.cat([cls.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.drop(x)
        for block in self.blocks:
            if self.with_cp and self.training and x.requires_grad:
                x = torch.utils.checkpoint.checkpoint(
                    block, x, hw, self.num_prefix, use_reentrant=False)
            else:
                x = block(x, hw, self.num_prefix)
        if self.norm is not None:
            x = self.norm(x)
        return x, hw
