"""What every pvt_mm backbone shares: arch tables, argument checks, the
output contract, freezing, initialisation and pretrained loading."""
import math
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from torch.nn.modules.batchnorm import _BatchNorm

from .layers import (PatchEmbed, Stage, StageSpec, nchw_to_tokens,
                     tokens_to_nchw)

# Arguments other OpenMMLab backbones take that mean nothing here, with what
# to do instead. Passing any of them is an error, never silently ignored.
KWARG_HINTS = {
    'depth': "ResNet's depth; choose a variant with arch=...",
    'pretrained': "use init_cfg=dict(type='Pretrained', checkpoint=PATH). "
                  "Not set by you? MMSegmentation's EncoderDecoder copies "
                  "the segmentor's model.pretrained (which a base config "
                  "sets for its own backbone, e.g. a ResNet) into the "
                  "backbone: set model.pretrained=None in your config",
    'convert_weights': 'official/timm/HF/mmdet checkpoints are detected '
                       'and converted automatically',
    'style': "ResNet's pytorch/caffe style has no meaning for transformers",
    'num_stages': 'the number of stages is set by arch',
    'strides': 'strides are set by arch',
    'dilations': 'transformer stages have no dilation',
    'norm_cfg': 'use norm_eps / embed_norm_eps',
}
for _name in ('deep_stem', 'stem_channels', 'base_channels', 'avg_down',
              'contract_dilation', 'stage_with_dcn', 'dcn', 'plugins',
              'zero_init_residual', 'num_layers', 'embed_dims'):
    KWARG_HINTS.setdefault(_name, 'not an argument of this backbone; '
                                  'set hyper-parameters through arch')

OUT_TYPES = ('featmap', 'cls_token', 'avg_featmap')


class FeatureSpec(NamedTuple):
    """What one returned map is, for the neck that reads it (as
    detectron2's ``ShapeSpec``): its channels and its stride in pixels."""
    channels: int
    stride: int


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


def _check_rates(rate) -> None:
    values = rate if isinstance(rate, (list, tuple)) else [rate]
    for r in values:
        if isinstance(r, bool) or not isinstance(r, (int, float)) or \
                not 0. <= r < 1.:
            raise ValueError(f'drop_path_rate must be a number in [0, 1) or '
                             f'a list of such numbers (one per stage), got '
                             f'{rate!r}')


def reject_unknown_kwargs(cls_name: str, kwargs: dict) -> None:
    """Raise a ``TypeError`` naming every unknown argument and its fix."""
    if not kwargs:
        return
    lines = [f'  {k}: {KWARG_HINTS.get(k, "unknown argument")}' for k in kwargs]
    raise TypeError(f'{cls_name} got unexpected argument(s) '
                    f'{", ".join(sorted(kwargs))}:\n' + '\n'.join(lines))


class PyramidBackbone(BaseModule):
    """Base of :class:`PVTv1`, :class:`PVTv2` and :class:`CvT`.

    Subclasses set ``family``, ``arch_settings`` (name -> hyper-parameter
    dict), ``arch_keys`` (the keys a custom arch dict must have) and
    ``checkpoint_formats``, build ``self.stages`` with :meth:`build_stages`
    and call :meth:`_init_outputs`.

    Args (shared by every family; a family's own arguments are listed in its
    class):
        in_channels: input image channels.
        out_type: ``'featmap'`` (dense prediction) or, for classification,
            ``'avg_featmap'`` (mean of the normed last stage) / ``'cls_token'``
            (families with a class token).
        qkv_bias: bias in the query / key / value projections.
        drop_rate, attn_drop_rate: dropout rates.
        drop_path_rate: stochastic depth. A number: rising linearly from 0
            over all blocks (PVT's convention); a list with one number per
            stage: rising from 0 within each stage (CvT's convention).
        frozen_stages: stages ``0..frozen_stages`` get no gradients and stay
            in eval mode; -1 freezes nothing.
        norm_eval: keep BatchNorm layers in eval mode.
        with_cp: activation checkpointing per block.
        recompute_ffn: in training, every FFN stores only fc1's output and
            recomputes its depthwise conv and activation in backward (less
            memory, a little more time). ``None``: the device's default
            (on for CPU, off for CUDA: ``pvt_mm.execution
            .RECOMPUTE_FFN_BY_DEVICE``); the ``'reference'`` execution
            policy turns it off whatever this says.
        init_cfg: e.g. ``dict(type='Pretrained', checkpoint=PATH)``; any
            supported checkpoint layout is converted on load.

    Output contract: ``forward`` returns a tuple with one NCHW map per
    ``out_indices`` entry (``out_type='featmap'``), or a 1-tuple with a
    ``(B, C)`` vector (``'cls_token'`` / ``'avg_featmap'``) for
    classification. :meth:`output_shape` (one :class:`FeatureSpec` per
    returned map) and ``out_channels`` / ``out_strides`` state what each
    returned map has, for necks to read.
    """
    family = ''
    arch_settings: Dict[str, dict] = {}
    # The checkpoint layouts this family reads (pvt_mm.weights.formats).
    checkpoint_formats: Tuple = ()
    arch_keys: Tuple[str, ...] = ()
    arch_optional_keys: Tuple[str, ...] = ()
    # Keys of the family's classification checkpoints that a dense backbone
    # does not have: listed when loading, never an error.
    leftover_patterns: Tuple[str, ...] = (r'^head\.', r'^norm\.',
                                          r'^stages\.\d+\.cls_(token|pos_embed)$')
    # Modules a pretrained checkpoint never has (added for dense prediction).
    fresh_patterns: Tuple[str, ...] = (r'^out_norms\.', r'^extra_downsample\.',
                                       r'\.num_batches_tracked$')

    @classmethod
    def resolve_arch(cls, arch: Union[str, dict]) -> dict:
        """Hyper-parameters of ``arch`` (a name in ``arch_settings`` or a dict)."""
        if isinstance(arch, str):
            key = arch.lower().replace('-', '_')
            if key not in cls.arch_settings:
                raise ValueError(
                    f'{cls.__name__}: unknown arch {arch!r}. Valid: '
                    f'{", ".join(repr(a) for a in cls.arch_settings)}, or a '
                    f'dict with keys {", ".join(cls.arch_keys)}.')
            return dict(cls.arch_settings[key])
        if isinstance(arch, dict):
            missing = [k for k in cls.arch_keys if k not in arch]
            unknown = [k for k in arch if k not in cls.arch_keys +
                       cls.arch_optional_keys]
            if missing or unknown:
                raise ValueError(
                    f'{cls.__name__}: custom arch dict is missing '
                    f'{missing} / has unknown keys {unknown}; it needs '
                    f'{list(cls.arch_keys)} (optional: '
                    f'{list(cls.arch_optional_keys)})')
            lengths = {k: len(arch[k]) for k in cls.arch_keys
                       if isinstance(arch[k], (list, tuple))}
            if len(set(lengths.values())) > 1:
                raise ValueError(f'{cls.__name__}: per-stage entries of the '
                                 f'arch dict differ in length: {lengths}')
            return dict(arch)
        raise TypeError(f'{cls.__name__}: arch must be a str or dict, '
                        f'got {type(arch).__name__}')

    def __init__(self,
                 in_channels: int = 3,
                 out_type: str = 'featmap',
                 qkv_bias: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: Union[float, Sequence[float]] = 0.1,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 recompute_ffn: Optional[bool] = None,
                 init_cfg=None,
                 **kwargs):
        reject_unknown_kwargs(type(self).__name__, kwargs)
        super().__init__(init_cfg=init_cfg)
        if not (isinstance(in_channels, int) and in_channels > 0):
            raise ValueError(f'in_channels must be a positive int, got '
                             f'{in_channels!r}')
        if out_type not in OUT_TYPES:
            raise ValueError(f'out_type must be one of {OUT_TYPES}, got '
                             f'{out_type!r}')
        self.in_channels = in_channels
        self.out_type = out_type
        self.qkv_bias = qkv_bias
        self.drop_rate = drop_rate
        self.attn_drop_rate = attn_drop_rate
        _check_rates(drop_path_rate)
        self.drop_path_rate = drop_path_rate
        self.norm_eval = norm_eval
        self.frozen_stages = frozen_stages
        self.with_cp = with_cp
        if recompute_ffn not in (None, True, False):
            raise ValueError(f'recompute_ffn must be None (the device\'s '
                             f'default), True or False, got {recompute_ffn!r}')
        self.recompute_ffn = recompute_ffn
        self._checked_sizes = set()

    # ------------------------------------------------------------ building
    def attn_args(self) -> dict:
        """The attention layers' shared arguments."""
        return dict(qkv_bias=self.qkv_bias, attn_drop=self.attn_drop_rate,
                    proj_drop=self.drop_rate)

    def class_token_wanted(self, with_cls_token: Optional[bool]) -> bool:
        """Whether the last stage runs a class token: ``with_cls_token``,
        by default only for ``out_type='cls_token'``."""
        if with_cls_token is None:
            with_cls_token = self.out_type == 'cls_token'
        if self.out_type == 'cls_token' and not with_cls_token:
            raise ValueError("out_type='cls_token' needs with_cls_token=True")
        return with_cls_token

    def build_stages(self,
                     specs: Sequence[StageSpec],
                     norm_eps: float,
                     embed_norm_eps: float,
                     attn_args: Optional[dict] = None,
                     ffn_args: Optional[dict] = None) -> nn.ModuleList:
        """The stages ``specs`` describe (:meth:`Stage.from_spec`), each
        from the previous one's width: the assembly every family shares.

        Every block gets stochastic depth from ``drop_path_rate``
        (:func:`stage_drop_paths`), its attention :meth:`attn_args` (+
        ``attn_args``), its FFN the dropout rate (+ ``ffn_args``), and
        every stage ``with_cp`` and ``recompute_ffn``.
        """
        rates = stage_drop_paths(self.drop_path_rate,
                                 [spec.depth for spec in specs])
        stages, prev = [], self.in_channels
        for spec, stage_rates in zip(specs, rates):
            stages.append(Stage.from_spec(
                spec, prev, stage_rates, norm_eps=norm_eps,
                embed_norm_eps=embed_norm_eps,
                attn_args=dict(self.attn_args(), **(attn_args or {})),
                ffn_args=dict(drop=self.drop_rate, **(ffn_args or {})),
                drop_rate=self.drop_rate, with_cp=self.with_cp,
                recompute_ffn=self.recompute_ffn))
            prev = spec.dims
        return nn.ModuleList(stages)

    def _init_outputs(self,
                      out_indices: Union[None, int, Sequence[int]],
                      out_norm_eps: Optional[float] = None,
                      extra_downsample: bool = False) -> None:
        """Validate ``out_indices``/``frozen_stages`` and build output norms
        (``out_norm_eps``) and the optional stride-doubling extra output.

        ``out_indices=None`` means every output for ``out_type='featmap'``
        and the last stage for the pooled classification outputs."""
        num_stages = len(self.stages)
        dims = [s.patch_embed.proj.out_channels for s in self.stages]
        strides = []
        for s in self.stages:
            strides.append((strides[-1] if strides else 1) *
                           s.patch_embed.proj.stride[0])
        if extra_downsample:
            self.extra_downsample = PatchEmbed(dims[-1], dims[-1], 3, 2, 1)
            dims.append(dims[-1])
            strides.append(strides[-1] * 2)
        num_outputs = len(dims)
        if out_indices is None:
            out_indices = (tuple(range(num_outputs)) if self.out_type == 'featmap'
                           else (num_stages - 1, ))
        if isinstance(out_indices, int):
            out_indices = (out_indices, )
        out_indices = tuple(out_indices)
        bad = [i for i in out_indices
               if not isinstance(i, int) or not -num_outputs <= i < num_outputs]
        if bad or not out_indices:
            raise ValueError(
                f'{type(self).__name__}: out_indices {out_indices} out of '
                f'range; this model has {num_outputs} outputs (0..'
                f'{num_outputs - 1})')
        out_indices = tuple(sorted(i % num_outputs for i in out_indices))
        if self.out_type != 'featmap' and out_indices != (num_stages - 1, ):
            raise ValueError(
                f"out_type={self.out_type!r} returns the pooled last stage; "
                f'set out_indices=({num_stages - 1},) or out_type=\'featmap\'')
        if not -1 <= self.frozen_stages < num_stages:
            raise ValueError(
                f'frozen_stages={self.frozen_stages} out of range; use -1 '
                f'(nothing frozen) to {num_stages - 1} (all stages)')
        self.out_indices = out_indices
        self.out_channels = [dims[i] for i in out_indices]
        self.out_strides = [strides[i] for i in out_indices]
        if out_norm_eps is not None and self.out_type == 'featmap':
            self.out_norms = nn.ModuleDict({
                str(i): nn.LayerNorm(dims[i], eps=out_norm_eps)
                for i in out_indices})
        else:
            self.out_norms = None
        self._freeze_stages()

    def output_shape(self) -> Tuple[FeatureSpec, ...]:
        """The output contract as data: one :class:`FeatureSpec`
        (channels, stride) per returned map, in ``forward``'s order."""
        return tuple(FeatureSpec(c, s) for c, s in zip(self.out_channels,
                                                        self.out_strides))

    def stage_min_sizes(self) -> List[int]:
        """Smallest map side each stage's blocks accept (1 unless SR conv)."""
        return [1] * len(self.stages)

    # ------------------------------------------------------------ forward
    def _feature_sizes(self, size: int) -> List[int]:
        sizes = []
        for stage in self.stages:
            size = stage.patch_embed.out_size(size)
            sizes.append(size)
        return sizes

    def min_input_size(self) -> int:
        """Smallest image side that every stage can process."""
        need = self.stage_min_sizes()
        size = 1
        while any(s < n for s, n in zip(self._feature_sizes(size), need)):
            size += 1
        return size

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(f'{type(self).__name__} expects a (B, C, H, W) '
                             f'batch, got a tensor of shape {tuple(x.shape)}')
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f'{type(self).__name__} was built with in_channels='
                f'{self.in_channels} but the input has {x.shape[1]} channels '
                f'(shape {tuple(x.shape)}); set in_channels={x.shape[1]} or '
                f'fix the data pipeline')
        h, w = int(x.shape[2]), int(x.shape[3])
        # The cache of checked sizes saves eager calls the loop below; a
        # compiled graph checks at trace time only and must not read it
        # (a guard on the set would recompile the model after every call
        # that adds a size).
        compiling = torch.compiler.is_compiling()
        if not compiling and (h, w) in self._checked_sizes:
            return
        need = self.stage_min_sizes()
        for side in (h, w):
            if any(s < n for s, n in zip(self._feature_sizes(side), need)):
                m = self.min_input_size()
                raise ValueError(
                    f'input of {h}x{w} pixels is too small for '
                    f'{type(self).__name__}: its deepest stage needs at least '
                    f'{m}x{m}; resize or pad the image (e.g. Pad '
                    f'size_divisor=32 in the pipeline)')
        if not compiling:
            self._checked_sizes.add((h, w))

    def _pool(self, tokens: torch.Tensor, num_prefix: int) -> torch.Tensor:
        """Classification vector from the last stage's tokens."""
        norm = getattr(self, 'norm', None)
        if self.out_type == 'cls_token':
            feat = tokens[:, 0]
            return norm(feat) if norm is not None else feat
        tokens = tokens[:, num_prefix:]
        if norm is not None:
            tokens = norm(tokens)
        return tokens.mean(dim=1)

    def _featmap(self, index: int, tokens: torch.Tensor, hw) -> torch.Tensor:
        """An output map in the standard contiguous NCHW layout, as ResNet
        returns it.

        Inside the backbone maps are channels-last views of the tokens; the
        maps handed to necks and heads are copied to contiguous NCHW once,
        because mmcv ops read raw NCHW memory whatever the strides (mmcv
        2.1's ``RoIAlign`` returns wrong features for a channels-last map,
        which FPN convolutions would propagate to the RoI heads) and heads
        ``.view`` their maps (CenterNet's heatmap)."""
        if self.out_norms is not None:
            tokens = self.out_norms[str(index)](tokens)
        return tokens_to_nchw(tokens, hw).contiguous()

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        self._check_input(x)
        outs = []
        for i, stage in enumerate(self.stages):
            tokens, hw = stage(x)
            spatial = tokens[:, stage.num_prefix:]
            x = tokens_to_nchw(spatial, hw)
            if i in self.out_indices and self.out_type == 'featmap':
                outs.append(self._featmap(i, spatial, hw))
        if self.out_type != 'featmap':
            return (self._pool(tokens, stage.num_prefix), )
        if hasattr(self, 'extra_downsample') and len(self.stages) in self.out_indices:
            tokens, hw = self.extra_downsample(x)
            outs.append(self._featmap(len(self.stages), tokens, hw))
        return tuple(outs)

    # ------------------------------------------------------------ training
    def _freeze_stages(self) -> None:
        for stage in self.stages[:self.frozen_stages + 1]:
            stage.eval()
            for p in stage.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    # ------------------------------------------------------------ weights
    def _default_init(self) -> None:
        """The official initialisation: truncated-normal linears and
        embeddings, fan-out normal convs, unit norms."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                std = math.sqrt(2.0 / (fan_out // m.groups))
                with torch.no_grad():  # drawn in index order, whatever the
                    # weight's memory layout (layers.channels_last_conv)
                    m.weight.copy_(torch.empty(
                        m.weight.shape, dtype=m.weight.dtype,
                        device=m.weight.device).normal_(0, std))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.LayerNorm, _BatchNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for name, p in self.named_parameters():
            if name.endswith(('pos_embed', 'cls_token')):
                trunc_normal_(p, std=.02)

    def init_weights(self) -> None:
        from pvt_mm.weights import load_pretrained
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            unknown = set(cfg) - {'type', 'checkpoint', 'prefix', 'allow_partial',
                                  'map_location'}
            if unknown or 'checkpoint' not in cfg:
                raise ValueError(
                    f"init_cfg=dict(type='Pretrained', ...) takes checkpoint, "
                    f'prefix and allow_partial; got {sorted(cfg)}')
            self._default_init()  # modules the checkpoint does not hold
            load_pretrained(self, cfg['checkpoint'], prefix=cfg.get('prefix'),
                            allow_partial=cfg.get('allow_partial', False))
            self._is_init = True
            return
        self._default_init()
        if cfg:
            super().init_weights()
        self._is_init = True
