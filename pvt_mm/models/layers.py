"""Building blocks shared by PVTv1, PVTv2 and CvT.

Token layout
------------
Inside a stage, tokens are a ``(B, N, C)`` tensor whose spatial tokens are in
row-major ``(H, W)`` order, optionally preceded by ``num_prefix`` extra tokens
(the class token). That is the same memory as a channels-last ``(B, H, W, C)``
feature map, so :func:`tokens_to_nchw` and :func:`nchw_to_tokens` are views: a
convolution sees a channels-last NCHW tensor and returns one, and no
NCHW <-> token transposes are ever copied.

Every ``forward`` here is the computation the papers describe. The few
calls into :mod:`pvt_mm.execution` (``attention``, ``add_residual``,
``ffn_strategy``, ...) compute the same numbers, possibly faster; with
``pvt_mm.execution.execution_policy('reference')`` they are the plain
PyTorch expressions their docstrings name.
"""
import functools
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint
from mmcv.cnn.bricks import DropPath as _MMCVDropPath
from mmengine.model import BaseModule

from pvt_mm.execution import (adaptive_avg_pool2d, add_residual, attention,
                              ffn_strategy, resize_bilinear)
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


def channels_last_conv(conv: nn.Conv2d) -> nn.Conv2d:
    """``conv`` with its weight stored channels-last: the layout of the
    weight gradient that a channels-last input (a token map) gives. With a
    contiguous weight, autograd copies that gradient into the weight's
    layout, one more operator per convolution per training step. Values,
    state-dict keys and results are unchanged."""
    return conv.to(memory_format=torch.channels_last)


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

    Non-overlapping for PVTv1 (kernel == stride, no padding), overlapping
    for PVTv2 and CvT (kernel > stride); each family's arch sets the
    padding (PVTv2: ``kernel // 2``, e.g. 7/4/3; CvT: 7/4/2 and 3/2/1).
    Returns tokens and the ``(H, W)`` of the map they came from.
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
        self.proj = channels_last_conv(nn.Conv2d(
            in_channels, embed_dims, kernel_size, stride=stride, padding=padding))
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
            self.pool_size = pool_size
            self.sr = channels_last_conv(nn.Conv2d(dims, dims, kernel_size=1))
            self.norm = nn.LayerNorm(dims, eps=sr_norm_eps)
            self.act = nn.GELU()
        elif sr_ratio > 1:
            self.sr = channels_last_conv(
                nn.Conv2d(dims, dims, kernel_size=sr_ratio, stride=sr_ratio))
            self.norm = nn.LayerNorm(dims, eps=sr_norm_eps)
        else:
            self.sr = None

    def reduce(self, x: torch.Tensor, hw: HW, num_prefix: int) -> torch.Tensor:
        """Tokens that keys and values are computed from."""
        if self.sr is None:
            return x
        fmap = tokens_to_nchw(x[:, num_prefix:], hw)
        if self.linear:
            fmap = adaptive_avg_pool2d(fmap, self.pool_size)
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


class Mlp(BaseModule):
    """Feed-forward network of PVTv1 and CvT: fc1 -> act -> fc2 (dropout
    after the activation and after fc2).

    Its hidden map is 4x wider than the tokens;
    :func:`pvt_mm.execution.ffn_strategy` may compute the same result with
    less memory. ``recompute`` (set by the backbone's ``recompute_ffn``):
    recompute the layers between fc1 and fc2 in backward instead of storing
    them (``None``: where the device's default says so;
    :func:`pvt_mm.execution.recomputes_ffn`).

    :meth:`hidden_layers` adds what a subclass puts between fc1 and the
    activation (:class:`ConvFFN`'s depthwise conv), registered in forward
    order.
    """
    recompute: Optional[bool] = None

    def __init__(self,
                 dims: int,
                 hidden_dims: int,
                 act_cfg: dict = dict(type='GELU'),
                 drop: float = 0.,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.fc1 = nn.Linear(dims, hidden_dims)
        self.relu: Optional[nn.Module] = None
        self.dwconv: Optional[nn.Conv2d] = None
        self.hidden_layers(hidden_dims)
        self.act = build_act(act_cfg)
        self.fc2 = nn.Linear(hidden_dims, dims)
        self.drop = nn.Dropout(drop)

    def hidden_layers(self, hidden_dims: int) -> None:
        """Layers between fc1 and the activation: none in the plain MLP."""

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        """fc1 [-> ReLU]: tokens to the hidden width."""
        x = self.fc1(x)
        return self.relu(x) if self.relu is not None else x

    def depthwise(self, x: torch.Tensor, hw: HW) -> torch.Tensor:
        """The 3x3 depthwise conv over the hidden token map (if any)."""
        if self.dwconv is None:
            return x
        return nchw_to_tokens(self.dwconv(tokens_to_nchw(x, hw)))

    def forward(self, x: torch.Tensor, hw: HW,
                num_prefix: int = 0) -> torch.Tensor:
        if self.dwconv is not None and num_prefix:
            raise ValueError(f'{type(self).__name__} with a depthwise conv '
                             f'cannot take prefix (class) tokens')
        strategy = ffn_strategy(self, x, hw)
        if strategy is not None:
            return strategy(self, x, hw)
        x = self.drop(self.act(self.depthwise(self.expand(x), hw)))
        return self.drop(self.fc2(x))


class ConvFFN(Mlp):
    """PVTv2's feed-forward network: fc1 [-> ReLU] -> 3x3 depthwise conv ->
    act -> fc2. The ReLU after fc1 is PVTv2-Li's (``extra_relu``). Its
    hidden map is 4-8x wider than the tokens (see :class:`Mlp`)."""

    def __init__(self,
                 dims: int,
                 hidden_dims: int,
                 extra_relu: bool = False,
                 act_cfg: dict = dict(type='GELU'),
                 drop: float = 0.,
                 init_cfg=None):
        self.extra_relu = extra_relu  # read by hidden_layers
        super().__init__(dims, hidden_dims, act_cfg=act_cfg, drop=drop,
                         init_cfg=init_cfg)

    def hidden_layers(self, hidden_dims: int) -> None:
        self.relu = nn.ReLU(inplace=True) if self.extra_relu else None
        self.dwconv = nn.Conv2d(hidden_dims, hidden_dims, 3, padding=1,
                                groups=hidden_dims)


class DropPath(_MMCVDropPath):
    """Stochastic depth (per sample, as in mmcv and timm): in training, each
    sample's input is kept with probability ``keep_prob = 1 - drop_prob``
    and then scaled by ``1 / keep_prob``, or zeroed.

    A subclass of mmcv's ``DropPath`` (same attribute ``drop_prob``, no
    parameters); the mask is drawn with ``bernoulli_`` (as timm does)
    instead of mmcv's ``floor(keep_prob + rand)``: the same distribution in
    fewer operators. :class:`Block` applies it through
    :func:`pvt_mm.execution.add_residual` with :meth:`keep_mask`.
    """

    @property
    def keep_prob(self) -> float:
        return 1. - self.drop_prob

    def keep_mask(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        """A per-sample 0/1 mask ``(B, 1, ..., 1)`` in ``x``'s dtype, or
        ``None`` when nothing is dropped (eval mode, ``drop_prob == 0``)."""
        if not self.training or self.drop_prob == 0.:
            return None
        shape = (x.shape[0], ) + (1, ) * (x.ndim - 1)
        return x.new_empty(shape).bernoulli_(self.keep_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = self.keep_mask(x)
        return x if keep is None else x * keep.mul(1. / self.keep_prob)


def linear_drop_path(rate: float, total: int) -> List[float]:
    """Stochastic-depth rates rising linearly from 0 to ``rate`` over
    ``total`` blocks (plain floats: also works on the meta device)."""
    if total <= 1:
        return [0.] * total
    return [rate * i / (total - 1) for i in range(total)]


def stage_drop_paths(rate: Union[float, Sequence[float]],
                     depths: Sequence[int]) -> List[List[float]]:
    """Per-stage lists of block drop-path rates.

    A number rises linearly from 0 to ``rate`` over all blocks of the
    network (PVT, PVTv2, timm). A sequence has one maximum per stage and
    rises from 0 to ``rate[i]`` within stage ``i`` (the official CvT's
    ``DROP_PATH_RATE: [0.0, 0.0, 0.1]``).
    """
    if isinstance(rate, (list, tuple)):
        if len(rate) != len(depths):
            raise ValueError(
                f'drop_path_rate has {len(rate)} per-stage entries but the '
                f'backbone has {len(depths)} stages; give one number per '
                f'stage, or one number for a linear rise over all blocks')
        rates = [float(r) for r in rate]
        return [linear_drop_path(r, d) for r, d in zip(rates, depths)]
    rates = iter(linear_drop_path(float(rate), sum(depths)))
    return [[next(rates) for _ in range(d)] for d in depths]


class Block(BaseModule):
    """Pre-norm transformer block: ``x + drop_path(attn(norm1(x)))``, then
    ``x + drop_path(mlp(norm2(x)))``."""

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

    def residual(self, x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        """``x + drop_path(branch)``."""
        if isinstance(self.drop_path, DropPath):
            keep = self.drop_path.keep_mask(branch)
            if keep is None:
                return add_residual(x, branch)
            return add_residual(x, branch, keep, self.drop_path.keep_prob)
        return add_residual(x, self.drop_path(branch))

    def forward(self, x: torch.Tensor, hw: HW, num_prefix: int = 0) -> torch.Tensor:
        x = self.residual(x, self.attn(self.norm1(x), hw, num_prefix))
        return self.residual(x, self.mlp(self.norm2(x), hw, num_prefix))


@dataclass(frozen=True)
class StageSpec:
    """One pyramid stage as a family's table describes it.

    Attributes:
        dims, depth: width and number of blocks.
        patch: the patch embedding's ``(kernel, stride, padding)``.
        attention: the attention's kind, a key of :data:`ATTENTIONS`
            (``'sra'``, ``'linear_sra'``, ``'conv_proj'``), with
            ``num_heads`` and ``attn_args`` (e.g. ``sr_ratio``).
        ffn: the FFN's kind, a key of :data:`FFNS` (``'mlp'``, ``'conv'``,
            ``'conv_relu'``), ``mlp_ratio`` hidden widths wide.
        pos_grid: side of a learned position embedding grid (PVTv1).
        cls_token, cls_pos_embed: the stage prepends a class token (with a
            position embedding of its own).
        embed_dropout: dropout (the backbone's ``drop_rate``) after the
            embeddings.
        out_norm: a LayerNorm on the stage's output (PVTv2).
    """
    dims: int
    depth: int
    patch: Tuple[int, int, int]
    attention: str
    num_heads: int
    ffn: str
    mlp_ratio: float
    attn_args: dict = field(default_factory=dict)
    pos_grid: Optional[int] = None
    cls_token: bool = False
    cls_pos_embed: bool = False
    embed_dropout: bool = False
    out_norm: bool = False

    def __post_init__(self):
        for kind, table, name in ((self.attention, ATTENTIONS, 'attention'),
                                  (self.ffn, FFNS, 'ffn')):
            if kind not in table:
                raise ValueError(f'StageSpec: unknown {name} {kind!r}; '
                                 f'known: {", ".join(table)}')
        if len(self.patch) != 3:
            raise ValueError(f'StageSpec: patch is (kernel, stride, '
                             f'padding), got {self.patch!r}')


#: Attention kinds of :class:`StageSpec`.
ATTENTIONS = {
    'sra': SRAttention,
    'linear_sra': functools.partial(SRAttention, linear=True),
    'conv_proj': ConvProjAttention,
}
#: FFN kinds of :class:`StageSpec`.
FFNS = {
    'mlp': Mlp,
    'conv': ConvFFN,
    'conv_relu': functools.partial(ConvFFN, extra_relu=True),
}


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

    @classmethod
    def from_spec(cls,
                  spec: StageSpec,
                  in_channels: int,
                  drop_paths: Sequence[float],
                  *,
                  norm_eps: float,
                  embed_norm_eps: float,
                  attn_args: Optional[dict] = None,
                  ffn_args: Optional[dict] = None,
                  drop_rate: float = 0.,
                  with_cp: bool = False,
                  recompute_ffn: Optional[bool] = None) -> 'Stage':
        """The stage ``spec`` describes, from ``in_channels``: its patch
        embedding (LayerNorm eps ``embed_norm_eps``), one pre-norm
        :class:`Block` per entry of ``drop_paths`` (LayerNorm eps
        ``norm_eps``; the attention gets ``attn_args`` and the FFN
        ``ffn_args`` besides what the spec says) and its extras."""
        kernel, stride, padding = spec.patch
        embed = PatchEmbed(in_channels, spec.dims, kernel, stride,
                           padding=padding, norm_eps=embed_norm_eps)
        blocks = []
        for rate in drop_paths:
            attn = ATTENTIONS[spec.attention](
                spec.dims, spec.num_heads, **spec.attn_args,
                **(attn_args or {}))
            mlp = FFNS[spec.ffn](spec.dims, int(spec.dims * spec.mlp_ratio),
                                 **(ffn_args or {}))
            mlp.recompute = recompute_ffn
            blocks.append(Block(spec.dims, attn, mlp, drop_path=rate,
                                norm_eps=norm_eps))
        grid = spec.pos_grid
        return cls(embed, blocks,
                   norm_eps=norm_eps if spec.out_norm else None,
                   pos_shape=(grid, grid) if grid else None,
                   with_cls_token=spec.cls_token,
                   cls_pos_embed=spec.cls_pos_embed,
                   drop_rate=drop_rate if spec.embed_dropout else 0.,
                   with_cp=with_cp)

    def resized_pos_embed(self, hw: HW) -> torch.Tensor:
        """The position embedding bilinearly resized to the ``hw`` grid."""
        grid = tokens_to_nchw(self.pos_embed, self.pos_shape)
        resized = resize_bilinear(grid, hw)
        return self.pos_embed if resized is grid else nchw_to_tokens(resized)

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
