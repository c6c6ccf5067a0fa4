"""What every pvt_mm backbone shares: building the stages from their specs,
the forward pass, freezing and initialisation. Beside it: the output
contract (:mod:`.outputs`), the random initialisation (:mod:`.weight_init`),
the drop-path schedule (:func:`.layers.stage_drop_paths`), the argument
and input checks with their errors (:mod:`.checks`); weights are read by
:mod:`pvt_mm.weights`."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from . import checks, outputs
# the checks' names, importable from here as before
from .checks import KWARG_HINTS, OUT_TYPES, reject_unknown_kwargs  # noqa: F401
from .layers import (PatchEmbed, Stage, StageSpec, stage_drop_paths,
                     tokens_to_nchw)
from .outputs import FeatureSpec
from .weight_init import official_init


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
        init_cfg: e.g. ``dict(type='Pretrained', checkpoint=PATH_OR_URL)``
            (a URL is downloaded once into torch hub's cache; an optional
            ``sha256=`` is checked); any supported checkpoint layout is
            converted on load.

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
        """Hyper-parameters of ``arch`` (a name in ``arch_settings`` or a
        dict; :func:`~pvt_mm.models.checks.resolve_arch` checks it)."""
        return checks.resolve_arch(cls.__name__, arch, cls.arch_settings,
                                   cls.arch_keys, cls.arch_optional_keys)

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
        checks.reject_unknown_kwargs(type(self).__name__, kwargs)
        checks.check_common_args(in_channels, out_type, drop_path_rate,
                                 recompute_ffn)
        super().__init__(init_cfg=init_cfg)
        self.in_channels = in_channels
        self.out_type = out_type
        self.qkv_bias = qkv_bias
        self.drop_rate = drop_rate
        self.attn_drop_rate = attn_drop_rate
        self.drop_path_rate = drop_path_rate
        self.norm_eval = norm_eval
        self.frozen_stages = frozen_stages
        self.with_cp = with_cp
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
        (:func:`~pvt_mm.models.layers.stage_drop_paths`), its attention :meth:`attn_args` (+
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
        dims, strides = outputs.pyramid_geometry(self.stages)
        if extra_downsample:
            self.extra_downsample = PatchEmbed(dims[-1], dims[-1], 3, 2, 1)
            dims, strides = dims + dims[-1:], strides + [strides[-1] * 2]
        self.out_indices = checks.resolve_out_indices(
            type(self).__name__, out_indices, len(dims), len(self.stages),
            self.out_type, self.frozen_stages)
        self.out_channels = [dims[i] for i in self.out_indices]
        self.out_strides = [strides[i] for i in self.out_indices]
        self.out_norms = None
        if out_norm_eps is not None and self.out_type == 'featmap':
            self.out_norms = outputs.out_norms(dims, self.out_indices,
                                               out_norm_eps)
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
    def feature_sizes(self, size: int) -> List[int]:
        """Side of each stage's map for an input side of ``size``."""
        sizes = []
        for stage in self.stages:
            size = stage.patch_embed.out_size(size)
            sizes.append(size)
        return sizes

    def min_input_size(self) -> int:
        """Smallest image side that every stage can process."""
        need = self.stage_min_sizes()
        size = 1
        while any(s < n for s, n in zip(self.feature_sizes(size), need)):
            size += 1
        return size

    def _featmap(self, index: int, tokens: torch.Tensor, hw) -> torch.Tensor:
        """Returned map ``index`` (:func:`.outputs.to_featmap`)."""
        norm = self.out_norms[str(index)] if self.out_norms else None
        return outputs.to_featmap(tokens, hw, norm)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        checks.check_input_once(self, x)
        outs = []
        for i, stage in enumerate(self.stages):
            tokens, hw = stage(x)
            spatial = tokens[:, stage.num_prefix:]
            x = tokens_to_nchw(spatial, hw)
            if i in self.out_indices and self.out_type == 'featmap':
                outs.append(self._featmap(i, spatial, hw))
        if self.out_type != 'featmap':
            return (outputs.pool_tokens(tokens, stage.num_prefix,
                                        self.out_type,
                                        getattr(self, 'norm', None)), )
        if hasattr(self, 'extra_downsample') and \
                len(self.stages) in self.out_indices:
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
    def init_weights(self) -> None:
        from pvt_mm.weights import load_pretrained
        cfg = self.init_cfg
        # MMDetection's PVT and Swin configs write dict(checkpoint=URL)
        # without a type; it means Pretrained there, and so it does here.
        if isinstance(cfg, dict) and (cfg.get('type') == 'Pretrained' or (
                'type' not in cfg and 'checkpoint' in cfg)):
            checks.check_pretrained_cfg(cfg)
            official_init(self)  # modules the checkpoint does not hold
            load_pretrained(self, cfg['checkpoint'], prefix=cfg.get('prefix'),
                            allow_partial=cfg.get('allow_partial', False),
                            sha256=cfg.get('sha256'))
            self._is_init = True
            return
        official_init(self)
        if cfg:
            super().init_weights()
        self._is_init = True
