"""PVTv2: Improved Baselines with Pyramid Vision Transformer.

Wang et al., CVMJ 2022 (https://arxiv.org/abs/2106.13797). Overlapping
patch embeddings, a 3x3 depthwise conv in every FFN, spatial-reduction
attention (or linear SRA for B2-Li), a LayerNorm after each stage.
"""
from typing import List, Optional, Sequence, Union

from pvt_mm.registry import MODELS
from .base import PyramidBackbone
from pvt_mm.weights.formats import PVTV2_FORMATS
from .layers import StageSpec

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




def stage_specs(arch: dict) -> List[StageSpec]:
    """PVTv2's stages (the paper, Sec. 3): overlapping patch embeddings
    (7x7 stride 4, then 3x3 stride 2), spatial-reduction attention (linear
    SRA for -Li), the FFN with a 3x3 depthwise conv (after a ReLU for
    -Li), a LayerNorm after every stage."""
    linear = arch.get('linear', False)
    return [StageSpec(dims=dims, depth=depth,
                      patch=(7, 4, 3) if i == 0 else (3, 2, 1),
                      attention='linear_sra' if linear else 'sra',
                      num_heads=heads, attn_args=dict(sr_ratio=sr),
                      ffn='conv_relu' if linear else 'conv', mlp_ratio=ratio,
                      out_norm=True)
            for i, (dims, depth, heads, ratio, sr) in enumerate(zip(
                arch['embed_dims'], arch['depths'], arch['num_heads'],
                arch['mlp_ratios'], arch['sr_ratios']))]


@MODELS.register_module()
class PVTv2(PyramidBackbone):
    """PVTv2 backbone (``type='pvt_mm.PVTv2'``).

    Args:
        arch: ``'b0'`` ... ``'b5'``, ``'b2_li'``, or a dict with
            ``embed_dims, depths, num_heads, mlp_ratios, sr_ratios``
            (optional ``linear``).
        out_indices: stages to return (0..3, strides 4/8/16/32); default
            all for ``'featmap'``, the last for ``'avg_featmap'``.
        norm_eps: eps of block and stage LayerNorms (official: 1e-6).
        embed_norm_eps: eps of patch-embed and spatial-reduction LayerNorms
            (official: 1e-5; mmdet's built-in and HF use 1e-6).
        **kwargs: the arguments every family shares (``in_channels``,
            ``out_type`` (``'featmap'`` or ``'avg_featmap'``), ``qkv_bias``,
            dropout and drop-path rates, ``frozen_stages``, ``norm_eval``,
            ``with_cp``, ``recompute_ffn``, ``init_cfg``): see
            :class:`~pvt_mm.models.base.PyramidBackbone`.
    """
    family = 'PVTv2'
    arch_settings = ARCH_SETTINGS
    checkpoint_formats = PVTV2_FORMATS
    arch_keys = ('embed_dims', 'depths', 'num_heads', 'mlp_ratios', 'sr_ratios')
    arch_optional_keys = ('linear', )

    def __init__(self,
                 arch: Union[str, dict] = 'b2',
                 *,
                 out_indices: Optional[Sequence[int]] = None,
                 norm_eps: float = 1e-6,
                 embed_norm_eps: float = 1e-5,
                 **kwargs):
        super().__init__(**kwargs)
        if self.out_type == 'cls_token':
            raise ValueError("PVTv2 has no class token; use out_type="
                             "'avg_featmap' for classification")
        self.arch = a = self.resolve_arch(arch)
        self.linear = a.get('linear', False)
        self.stages = self.build_stages(
            stage_specs(a), norm_eps=norm_eps, embed_norm_eps=embed_norm_eps,
            attn_args=dict(sr_norm_eps=embed_norm_eps))
        self._init_outputs(out_indices)

    def stage_min_sizes(self):
        if self.linear:
            return [1] * len(self.stages)
        return list(self.arch['sr_ratios'])
