"""CvT: Introducing Convolutions to Vision Transformers.

Wu et al., ICCV 2021 (https://arxiv.org/abs/2103.15808). Three stages of
overlapping convolutional token embeddings and attention whose q/k/v come
from depthwise conv + BatchNorm projections (k/v at stride 2); no position
embedding; a class token in the last stage; QuickGELU MLPs.

For dense prediction the backbone returns strides 4/8/16, with
``extra_downsample=True`` a fourth stride-32 map (3x3 stride-2 conv + LN over
the last stage) so 4-level FPNs (RetinaNet, Mask R-CNN, GFL, Semantic FPN)
get the strides they are designed for, and a LayerNorm on every returned map.
"""
from typing import List, Optional, Sequence, Union

import torch.nn as nn

from pvt_mm.registry import MODELS
from .base import PyramidBackbone
from pvt_mm.weights.formats import CVT_FORMATS
from .layers import StageSpec

_CVT = dict(patch_sizes=(7, 3, 3), patch_strides=(4, 2, 2),
            patch_paddings=(2, 1, 1), mlp_ratio=4)

#: Variant table (the CvT paper, Table 2).
ARCH_SETTINGS = {
    '13': dict(embed_dims=(64, 192, 384), depths=(1, 2, 10),
               num_heads=(1, 3, 6), **_CVT),
    '21': dict(embed_dims=(64, 192, 384), depths=(1, 4, 16),
               num_heads=(1, 3, 6), **_CVT),
    'w24': dict(embed_dims=(192, 768, 1024), depths=(2, 2, 20),
                num_heads=(3, 12, 16), **_CVT),
}


def stage_specs(arch: dict, with_cls_token: bool) -> List[StageSpec]:
    """CvT's stages (the paper, Sec. 3): overlapping convolutional token
    embeddings (kernel, stride and padding from the table; padding by
    default ``(kernel - stride + 1) // 2``: the official 2/1/1),
    convolutional-projection attention, a plain MLP, and in the last stage
    a class token (``with_cls_token``); dropout after the embeddings."""
    last = len(arch['embed_dims']) - 1
    specs = []
    for i, (dims, depth, heads) in enumerate(zip(
            arch['embed_dims'], arch['depths'], arch['num_heads'])):
        k, s = arch['patch_sizes'][i], arch['patch_strides'][i]
        pad = (arch['patch_paddings'][i] if 'patch_paddings' in arch
               else (k - s + 1) // 2)
        specs.append(StageSpec(dims=dims, depth=depth, patch=(k, s, pad),
                               attention='conv_proj', num_heads=heads,
                               ffn='mlp', mlp_ratio=arch['mlp_ratio'],
                               cls_token=with_cls_token and i == last,
                               embed_dropout=True))
    return specs


@MODELS.register_module()
class CvT(PyramidBackbone):
    """CvT backbone (``type='pvt_mm.CvT'``).

    Args:
        arch: ``'13'``, ``'21'``, ``'w24'`` or a dict with ``embed_dims,
            depths, num_heads, patch_sizes, patch_strides, mlp_ratio`` and
            optionally ``patch_paddings`` (default ``(k - s + 1) // 2`` for
            kernel ``k`` and stride ``s``: the official 2/1/1).
        out_indices: maps to return: 0..2 (strides 4/8/16) and, with
            ``extra_downsample``, 3 (stride 32); default: all of them
            (the last stage for ``'cls_token'``).
        out_type: ``'featmap'`` or ``'cls_token'`` (classification: final
            norm on the class token, as CvT was trained).
        with_cls_token: run the stage-3 class token (default: only for
            ``out_type='cls_token'``; dense outputs never include it).
        extra_downsample: add the stride-32 output (new weights).
        out_norms: LayerNorm on each returned map (new weights; default on
            for dense prediction).
        act_cfg: MLP activation; ``QuickGELU`` as trained, ``GELU`` matches
            HF transformers' ``CvtModel``.
        norm_eps: LayerNorm eps (official: 1e-5).
        **kwargs: the arguments every family shares: see
            :class:`~pvt_mm.models.base.PyramidBackbone` (``norm_eval``
            keeps the projections' BatchNorms in eval mode).
    """
    family = 'CvT'
    arch_settings = ARCH_SETTINGS
    checkpoint_formats = CVT_FORMATS
    arch_keys = ('embed_dims', 'depths', 'num_heads', 'patch_sizes',
                 'patch_strides', 'mlp_ratio')
    arch_optional_keys = ('patch_paddings', )

    def __init__(self,
                 arch: Union[str, dict] = '13',
                 *,
                 out_indices: Optional[Sequence[int]] = None,
                 with_cls_token: Optional[bool] = None,
                 extra_downsample: bool = False,
                 out_norms: bool = True,
                 act_cfg: dict = dict(type='QuickGELU'),
                 norm_eps: float = 1e-5,
                 **kwargs):
        super().__init__(**kwargs)
        with_cls_token = self.class_token_wanted(with_cls_token)
        if self.out_type != 'featmap' and extra_downsample:
            raise ValueError('extra_downsample is for dense prediction '
                             "(out_type='featmap')")
        self.arch = a = self.resolve_arch(arch)
        self.stages = self.build_stages(
            stage_specs(a, with_cls_token), norm_eps=norm_eps,
            embed_norm_eps=norm_eps, ffn_args=dict(act_cfg=act_cfg))
        if self.out_type != 'featmap':
            self.norm = nn.LayerNorm(a['embed_dims'][-1], eps=norm_eps)
        self._init_outputs(out_indices, norm_eps if out_norms else None,
                           extra_downsample=extra_downsample)
