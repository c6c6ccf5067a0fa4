"""PVTv1: Pyramid Vision Transformer.

Wang et al., ICCV 2021 (https://arxiv.org/abs/2102.12122). Non-overlapping
patch embeddings, learned absolute position embeddings per stage (resized to
the input), spatial-reduction attention, a plain MLP, and a class token in
the last stage for classification.
"""
from typing import Optional, Sequence, Union

import torch.nn as nn

from pvt_mm.registry import MODELS
from .base import PyramidBackbone, linear_drop_path
from .formats import PVTV1_FORMATS
from .layers import Block, ConvFFN, PatchEmbed, SRAttention, Stage

_DIMS = (64, 128, 320, 512)
_HEADS = (1, 2, 5, 8)
_MLP = (8, 8, 4, 4)
_SR = (8, 4, 2, 1)

#: Variant table (the PVT paper, Table 1).
ARCH_SETTINGS = {
    'tiny': dict(embed_dims=_DIMS, depths=(2, 2, 2, 2), num_heads=_HEADS,
                 mlp_ratios=_MLP, sr_ratios=_SR),
    'small': dict(embed_dims=_DIMS, depths=(3, 4, 6, 3), num_heads=_HEADS,
                  mlp_ratios=_MLP, sr_ratios=_SR),
    'medium': dict(embed_dims=_DIMS, depths=(3, 4, 18, 3), num_heads=_HEADS,
                   mlp_ratios=_MLP, sr_ratios=_SR),
    'large': dict(embed_dims=_DIMS, depths=(3, 8, 27, 3), num_heads=_HEADS,
                  mlp_ratios=_MLP, sr_ratios=_SR),
}


@MODELS.register_module()
class PVTv1(PyramidBackbone):
    """PVTv1 backbone (``type='pvt_mm.PVTv1'``).

    Args:
        arch: ``'tiny'``, ``'small'``, ``'medium'``, ``'large'`` or a dict
            with ``embed_dims, depths, num_heads, mlp_ratios, sr_ratios``.
        pretrain_img_size: image size the position embeddings were learned
            at; they are bilinearly resized to every input.
        out_type: ``'featmap'`` (dense prediction, like the official
            detection code: no class token) or ``'cls_token'`` /
            ``'avg_featmap'`` (classification; ``'cls_token'`` adds the
            stage-4 class token and the final norm).
        with_cls_token: run the class token through stage 4 (default: only
            for ``out_type='cls_token'``).
        out_norms: add a LayerNorm to each returned map (new weights).
        norm_eps / embed_norm_eps: LayerNorm eps in blocks / in patch-embed
            and spatial-reduction norms (official 1e-6 / 1e-5).
        Others as in :class:`~pvt_mm.models.PVTv2`.
    """
    family = 'PVTv1'
    arch_settings = ARCH_SETTINGS
    checkpoint_formats = PVTV1_FORMATS
    arch_keys = ('embed_dims', 'depths', 'num_heads', 'mlp_ratios', 'sr_ratios')

    def __init__(self,
                 arch: Union[str, dict] = 'small',
                 in_channels: int = 3,
                 pretrain_img_size: int = 224,
                 out_indices: Optional[Sequence[int]] = None,
                 out_type: str = 'featmap',
                 with_cls_token: bool = None,
                 out_norms: bool = False,
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
        if with_cls_token is None:
            with_cls_token = out_type == 'cls_token'
        if out_type == 'cls_token' and not with_cls_token:
            raise ValueError("out_type='cls_token' needs with_cls_token=True")
        self.arch = a = self.resolve_arch(arch)
        num_stages = len(a['embed_dims'])
        total = sum(a['depths'])
        dpr = linear_drop_path(drop_path_rate, total)
        stages, prev, first, grid = [], in_channels, 0, pretrain_img_size
        for i, dims in enumerate(a['embed_dims']):
            patch = 4 if i == 0 else 2
            grid //= patch
            last = i == num_stages - 1
            blocks = [
                Block(dims,
                      attn=SRAttention(dims, a['num_heads'][i],
                                       sr_ratio=a['sr_ratios'][i],
                                       qkv_bias=qkv_bias,
                                       attn_drop=attn_drop_rate,
                                       proj_drop=drop_rate,
                                       sr_norm_eps=embed_norm_eps),
                      mlp=ConvFFN(dims, int(dims * a['mlp_ratios'][i]),
                                  drop=drop_rate),
                      drop_path=dpr[first + j], norm_eps=norm_eps)
                for j in range(a['depths'][i])
            ]
            stages.append(Stage(
                PatchEmbed(prev, dims, patch, patch, norm_eps=embed_norm_eps),
                blocks, pos_shape=(grid, grid),
                with_cls_token=with_cls_token and last,
                cls_pos_embed=True, drop_rate=drop_rate, with_cp=with_cp))
            first += a['depths'][i]
            prev = dims
        self.stages = nn.ModuleList(stages)
        if out_type != 'featmap':
            self.norm = nn.LayerNorm(a['embed_dims'][-1], eps=norm_eps)
        self._init_outputs(out_indices, norm_eps if out_norms else None)

    def stage_min_sizes(self):
        return list(self.arch['sr_ratios'])
