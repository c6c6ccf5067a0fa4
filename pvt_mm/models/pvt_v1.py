"""PVTv1: Pyramid Vision Transformer.

Wang et al., ICCV 2021 (https://arxiv.org/abs/2102.12122). Non-overlapping
patch embeddings, learned absolute position embeddings per stage (resized to
the input), spatial-reduction attention, a plain MLP, and a class token in
the last stage for classification.
"""
from typing import Optional, Sequence, Union

import torch.nn as nn

from pvt_mm.registry import MODELS
from .base import PyramidBackbone
from .formats import PVTV1_FORMATS
from .layers import Mlp, SRAttention

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
        with_cls_token: run the class token through stage 4 (default: only
            for ``out_type='cls_token'``).
        out_norms: add a LayerNorm to each returned map (new weights).
        out_indices: as in :class:`~pvt_mm.models.PVTv2`.
        norm_eps / embed_norm_eps: LayerNorm eps in blocks / in patch-embed
            and spatial-reduction norms (official 1e-6 / 1e-5).
        **kwargs: the arguments every family shares: see
            :class:`~pvt_mm.models.base.PyramidBackbone`.
    """
    family = 'PVTv1'
    arch_settings = ARCH_SETTINGS
    checkpoint_formats = PVTV1_FORMATS
    arch_keys = ('embed_dims', 'depths', 'num_heads', 'mlp_ratios', 'sr_ratios')

    def __init__(self,
                 arch: Union[str, dict] = 'small',
                 *,
                 pretrain_img_size: int = 224,
                 out_indices: Optional[Sequence[int]] = None,
                 with_cls_token: Optional[bool] = None,
                 out_norms: bool = False,
                 norm_eps: float = 1e-6,
                 embed_norm_eps: float = 1e-5,
                 **kwargs):
        # out_type: 'featmap' (dense prediction, like the official detection
        # code: no class token), 'cls_token' (the stage-4 class token and
        # the final norm) or 'avg_featmap'.
        super().__init__(**kwargs)
        with_cls_token = self.class_token_wanted(with_cls_token)
        self.arch = a = self.resolve_arch(arch)
        last = len(a['embed_dims']) - 1

        def block_layers(i: int, dims: int):
            return (SRAttention(dims, a['num_heads'][i], a['sr_ratios'][i],
                                sr_norm_eps=embed_norm_eps, **self.attn_args()),
                    Mlp(dims, int(dims * a['mlp_ratios'][i]),
                        drop=self.drop_rate))

        def stage_args(i: int) -> dict:
            grid = pretrain_img_size // 2 ** (i + 2)  # patches 4, 2, 2, 2
            return dict(pos_shape=(grid, grid), drop_rate=self.drop_rate,
                        with_cls_token=with_cls_token and i == last,
                        cls_pos_embed=True)

        self.stages = self.build_stages(
            a['embed_dims'], a['depths'],
            patch_embed=lambda i: (4, 4, 0) if i == 0 else (2, 2, 0),
            block_layers=block_layers, norm_eps=norm_eps,
            embed_norm_eps=embed_norm_eps, stage_args=stage_args)
        if self.out_type != 'featmap':
            self.norm = nn.LayerNorm(a['embed_dims'][-1], eps=norm_eps)
        self._init_outputs(out_indices, norm_eps if out_norms else None)

    def stage_min_sizes(self):
        return list(self.arch['sr_ratios'])
