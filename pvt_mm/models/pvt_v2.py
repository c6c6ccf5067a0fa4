"""PVTv2: Improved Baselines with Pyramid Vision Transformer.

Wang et al., CVMJ 2022 (https://arxiv.org/abs/2106.13797). Overlapping
patch embeddings, a 3x3 depthwise conv in every FFN, spatial-reduction
attention (or linear SRA for B2-Li), a LayerNorm after each stage.
"""
from typing import Optional, Sequence, Union

import torch

from pvt_mm.registry import MODELS
from .base import PyramidBackbone, linear_drop_path
from .formats import PVTV2_FORMATS
from .layers import Block, ConvFFN, PatchEmbed, SRAttention, Stage

_WIDE = (64, 128, 320, 512)
_HEADS = (1, 2, 5, 8)
_SR = (8, 4, 2, 1)

#: Variant table (the PVTv2 paper, Table 1).
ARCH_SETTINGS = {
    'b0': dict(embed_dims=(32, 64, 160, 256), depths=(2, 2, 2, 2),
               num_heads=_HEADS, mlp_ratios=(8, 8, 4, 4), sr_ratios=_SR),
    'b1': dict(embed_dims=_WIDE, depths=(2, 2, 2, 2), num_heads=_HEADS,
               mlp_ratios=(8, 8, 4, 4), sr_ratios=_SR),
    'b2': dict(embed_dims=_WIDE, depths=(3, 4, 6, 3), num_heads=_HEADS,
               mlp_ratios=(8, 8, 4, 4), sr_ratios=_SR),
    'b2_li': dict(embed_dims=_WIDE, depths=(3, 4, 6, 3), num_heads=_HEADS,
                  mlp_ratios=(8, 8, 4, 4), sr_ratios=_SR, linear=True),
    'b3': dict(embed_dims=_WIDE, depths=(3, 4, 18, 3), num_heads=_HEADS,
               mlp_ratios=(8, 8, 4, 4), sr_ratios=_SR),
    'b4': dict(embed_dims=_WIDE, depths=(3, 8, 27, 3), num_heads=_HEADS,
               mlp_ratios=(8, 8, 4, 4), sr_ratios=_SR),
    'b5': dict(embed_dims=_WIDE, depths=(3, 6, 40, 3), num_heads=_HEADS,
               mlp_ratios=(4, 4, 4, 4), sr_ratios=_SR),
}


@MODELS.register_module()
class PVTv2(PyramidBackbone):
    """PVTv2 backbone (``type='pvt_mm.PVTv2'``).

    Args:
        arch: ``'b0'`` ... ``'b5'``, ``'b2_li'``, or a dict with
            ``embed_dims, depths, num_heads, mlp_ratios, sr_ratios``
            (optional ``linear``).
        in_channels: input image channels.
        out_indices: stages to return (0..3, strides 4/8/16/32); default
            all for ``'featmap'``, the last for ``'avg_featmap'``.
        out_type: ``'featmap'`` (dense prediction) or ``'avg_featmap'``
            (classification: mean of the normed last stage).
        qkv_bias: bias in the q / kv projections.
        drop_rate, attn_drop_rate: dropout rates.
        drop_path_rate: stochastic depth, linear over all blocks.
        norm_eps: eps of block and stage LayerNorms (official: 1e-6).
        embed_norm_eps: eps of patch-embed and spatial-reduction LayerNorms
            (official: 1e-5; mmdet's built-in and HF use 1e-6).
        frozen_stages: stages ``0..frozen_stages`` get no gradients and stay
            in eval mode; -1 freezes nothing.
        norm_eval: keep BatchNorm layers in eval mode (none in PVTv2).
        with_cp: activation checkpointing per block.
        init_cfg: e.g. ``dict(type='Pretrained', checkpoint=PATH)``; any
            supported checkpoint layout is converted on load.
    """
    family = 'PVTv2'
    arch_settings = ARCH_SETTINGS
    checkpoint_formats = PVTV2_FORMATS
    arch_keys = ('embed_dims', 'depths', 'num_heads', 'mlp_ratios', 'sr_ratios')
    arch_optional_keys = ('linear', )

    def __init__(self,
                 arch: Union[str, dict] = 'b2',
                 in_channels: int = 3,
                 out_indices: Optional[Sequence[int]] = None,
                 out_type: str = 'featmap',
                 qkv_bias: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.1,
                 norm_eps: float = 1e-6,
                 embed_norm_eps: float = 1e-5,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg=None,
                 **kwargs):
        super().__init__(in_channels, out_type, norm_eval, frozen_stages,
                         init_cfg, kwargs)
        if out_type == 'cls_token':
            raise ValueError("PVTv2 has no class token; use out_type="
                             "'avg_featmap' for classification")
        self.arch = a = self.resolve_arch(arch)
        self.linear = linear = a.get('linear', False)
        total = sum(a['depths'])
        dpr = linear_drop_path(drop_path_rate, total)
        stages, prev, first = [], in_channels, 0
        for i, dims in enumerate(a['embed_dims']):
            patch_embed = PatchEmbed(prev, dims, kernel_size=7 if i == 0 else 3,
                                     stride=4 if i == 0 else 2,
                                     padding=3 if i == 0 else 1,
                                     norm_eps=embed_norm_eps)
            blocks = [
                Block(dims,
                      attn=SRAttention(dims, a['num_heads'][i],
                                       sr_ratio=a['sr_ratios'][i],
                                       linear=linear, qkv_bias=qkv_bias,
                                       attn_drop=attn_drop_rate,
                                       proj_drop=drop_rate,
                                       sr_norm_eps=embed_norm_eps),
                      mlp=ConvFFN(dims, int(dims * a['mlp_ratios'][i]),
                                  dwconv=True, extra_relu=linear,
                                  drop=drop_rate),
                      drop_path=dpr[first + j], norm_eps=norm_eps)
                for j in range(a['depths'][i])
            ]
            stages.append(Stage(patch_embed, blocks, norm_eps=norm_eps,
                                with_cp=with_cp))
            first += a['depths'][i]
            prev = dims
        self.stages = torch.nn.ModuleList(stages)
        self._init_outputs(out_indices)

    def stage_min_sizes(self):
        if self.linear:
            return [1] * len(self.stages)
        return list(self.arch['sr_ratios'])
