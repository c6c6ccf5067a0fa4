"""PVTv1: Pyramid Vision Transformer.

Wang et al., ICCV 2021 (https://arxiv.org/abs/2102.12122). Non-overlapping
patch embeddings, learned absolute position embeddings per stage (resized to
the input), spatial-reduction attention, a plain MLP, and a class token in
the last stage for classification.
"""
from typing import List, Optional, Sequence, Union

import torch.nn as nn

from pvt_mm.registry import MODELS
from .base import PyramidBackbone
from pvt_mm.weights.formats import PVTV1_FORMATS
from .layers import StageSpec

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


def stage_specs(arch: dict, pretrain_img_size: int,
                with_cls_token: bool) -> List[StageSpec]:
    """PVTv1's stages (the paper, Sec. 3): non-overlapping patches (4x4,
    then 2x2), a learned position embedding on the grid of
    ``pretrain_img_size`` (resized to every input), spatial-reduction
    attention, a plain MLP, and in the last stage a class token with a
    position embedding of its own (``with_cls_token``); dropout after the
    embeddings."""
    last = len(arch['embed_dims']) - 1
    return [StageSpec(dims=dims, depth=depth,
                      patch=(4, 4, 0) if i == 0 else (2, 2, 0),
                      attention='sra', num_heads=heads,
                      attn_args=dict(sr_ratio=sr), ffn='mlp', mlp_ratio=ratio,
                      pos_grid=pretrain_img_size // 2 ** (i + 2),
                      cls_token=with_cls_token and i == last,
                      cls_pos_embed=True, embed_dropout=True)
            for i, (dims, depth, heads, ratio, sr) in enumerate(zip(
                arch['embed_dims'], arch['depths'], arch['num_heads'],
                arch['mlp_ratios'], arch['sr_ratios']))]


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
        self.stages = self.build_stages(
            stage_specs(a, pretrain_img_size, with_cls_token),
            norm_eps=norm_eps, embed_norm_eps=embed_norm_eps,
            attn_args=dict(sr_norm_eps=embed_norm_eps))
        if self.out_type != 'featmap':
            self.norm = nn.LayerNorm(a['embed_dims'][-1], eps=norm_eps)
        self._init_outputs(out_indices, norm_eps if out_norms else None)

    def stage_min_sizes(self):
        return list(self.arch['sr_ratios'])
