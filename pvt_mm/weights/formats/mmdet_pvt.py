"""MMDetection 3.x's built-in ``PyramidVisionTransformer`` and
``PyramidVisionTransformerV2``: one layout for both PVT families."""
from .rules import CheckpointFormat, StateDict, rename_keys, split_fused_qkv


def is_mmdet_pvt(sd: StateDict, conv_ffn: bool) -> bool:
    """mmdet's PVT layout; ``conv_ffn``: with PVTv2's depthwise conv."""
    return 'layers.0.0.projection.weight' in sd and (
        any('ffn.layers.1.weight' in k and sd[k].dim() == 4 for k in sd)
        == conv_ffn)


def from_mmdet_pvt(sd: StateDict, pos_embed: bool) -> StateDict:
    """mmdet's keys -> ours; ``pos_embed``: PVTv1 (a position-embedding
    module before the blocks of each stage)."""
    offset = int(pos_embed)
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


def mmdet_pvt_format(family: str) -> CheckpointFormat:
    """The layout of mmdet's ``PyramidVisionTransformer`` (``'PVTv1'``) or
    ``PyramidVisionTransformerV2`` (``'PVTv2'``)."""
    v1 = family == 'PVTv1'
    return CheckpointFormat(
        family, 'mmdet PyramidVisionTransformer' + ('' if v1 else 'V2'),
        lambda sd: is_mmdet_pvt(sd, conv_ffn=not v1),
        lambda sd: from_mmdet_pvt(sd, pos_embed=v1))
