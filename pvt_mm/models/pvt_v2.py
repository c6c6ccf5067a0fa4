"""PVTv2: Improved Baselines with Pyramid Vision Transformer.

Wang et al., CVMJ 2022 (https://arxiv.org/abs/2106.13797). Overlapping
patch embeddings, a 3x3 depthwise conv in every FFN, spatial-reduction
attention (or linear SRA for B2-Li), a LayerNorm after each stage.
"""
from typing import Optional, Sequence, Union

import torch

from pvt_mm.registry import MODELS
from .base import PyramidBackbone, linear_drop_path
from .checkpoint import (merge_kv, register_format, rename_keys,
                         split_fused_qkv)
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


# ---------------------------------------------------------------- weights
# Every layout below is converted to our keys, e.g.
# ``stages.1.blocks.0.attn.kv.weight``, ``stages.3.norm.weight``.

def _is_ours(sd):
    return 'stages.0.patch_embed.proj.weight' in sd and any(
        '.mlp.dwconv.' in k for k in sd)


def _is_official(sd):
    return 'patch_embed1.proj.weight' in sd and any(
        'mlp.dwconv.dwconv' in k for k in sd)


def _from_official(sd):
    return rename_keys(sd, [
        (r'^patch_embed(\d)\.', lambda m: f'stages.{int(m[1]) - 1}.patch_embed.'),
        (r'^block(\d)\.', lambda m: f'stages.{int(m[1]) - 1}.blocks.'),
        (r'^norm(\d)\.', lambda m: f'stages.{int(m[1]) - 1}.norm.'),
        (r'\.dwconv\.dwconv\.', '.dwconv.'),
    ])


def _is_timm(sd):
    return 'patch_embed.proj.weight' in sd and 'stages.0.blocks.0.attn.q.weight' in sd


def _from_timm(sd):
    return rename_keys(sd, [
        (r'^patch_embed\.', 'stages.0.patch_embed.'),
        (r'^stages\.(\d)\.downsample\.', r'stages.\1.patch_embed.'),
    ])


def _is_hf(sd):
    return any(k.startswith(('encoder.layers.0.patch_embedding.',
                             'pvt_v2.encoder.layers.0.patch_embedding.'))
               for k in sd)


def _from_hf(sd):
    sd = rename_keys(sd, [
        (r'^pvt_v2\.', ''),
        (r'^encoder\.layers\.(\d)\.', r'stages.\1.'),
        (r'\.patch_embedding\.layer_norm\.', '.patch_embed.norm.'),
        (r'\.patch_embedding\.', '.patch_embed.'),
        (r'\.layer_norm_1\.', '.norm1.'),
        (r'\.layer_norm_2\.', '.norm2.'),
        (r'\.attention\.query\.', '.attn.q.'),
        (r'\.attention\.spatial_reduction\.', '.attn.sr.'),
        (r'\.attention\.layer_norm\.', '.attn.norm.'),
        (r'\.attention\.', '.attn.'),
        (r'\.mlp\.dense1\.', '.mlp.fc1.'),
        (r'\.mlp\.dense2\.', '.mlp.fc2.'),
        (r'\.mlp\.dwconv\.dwconv\.', '.mlp.dwconv.'),
        (r'^(stages\.\d)\.layer_norm\.', r'\1.norm.'),
        (r'^classifier\.', 'head.'),
    ])
    return merge_kv(sd, 'key', 'value', 'kv')


def _is_mmdet(sd, conv_ffn=True):
    return 'layers.0.0.projection.weight' in sd and (
        any('ffn.layers.1.weight' in k and sd[k].dim() == 4 for k in sd)
        == conv_ffn)


def from_mmdet(sd, pos_embed: bool):
    """mmdet 3.x built-in ``PyramidVisionTransformer(V2)`` -> our keys."""
    offset = int(pos_embed)  # mmdet puts the pos-embed module before blocks
    fc2 = '3' if pos_embed else '4'
    sd = rename_keys(sd, [
        (r'^layers\.(\d)\.0\.projection\.', r'stages.\1.patch_embed.proj.'),
        (r'^layers\.(\d)\.0\.norm\.', r'stages.\1.patch_embed.norm.'),
        (r'^layers\.(\d)\.1\.0\.pos_embed$', r'stages.\1.pos_embed'),
        (r'^layers\.(\d)\.1\.(\d+)\.',
         lambda m: f'stages.{m[1]}.blocks.{int(m[2]) - offset}.'),
        (r'^layers\.(\d)\.2\.', r'stages.\1.norm.'),
        (r'\.attn\.attn\.out_proj\.', '.attn.proj.'),
        (r'\.ffn\.layers\.0\.', '.mlp.fc1.'),
        (r'\.ffn\.layers\.1\.', '.mlp.dwconv.'),
        (rf'\.ffn\.layers\.{fc2}\.', '.mlp.fc2.'),
    ])
    sd = split_fused_qkv(sd, 'attn.attn.in_proj_', 'attn.q', 'attn.kv')
    # mmdet runs fc1/fc2 as 1x1 convs.
    return {k: v.flatten(1) if ('.fc1.weight' in k or '.fc2.weight' in k)
            and v.dim() == 4 else v for k, v in sd.items()}


register_format('PVTv2', 'pvt_mm', _is_ours, dict)
register_format('PVTv2', 'official PVTv2', _is_official, _from_official)
register_format('PVTv2', 'timm pvt_v2', _is_timm, _from_timm)
register_format('PVTv2', 'HF PvtV2Model', _is_hf, _from_hf)
register_format('PVTv2', 'mmdet PyramidVisionTransformerV2', _is_mmdet,
                lambda sd: from_mmdet(sd, pos_embed=False))
