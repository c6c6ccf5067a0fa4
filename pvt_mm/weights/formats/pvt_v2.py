"""Checkpoint layouts of PVTv2, converted to our keys, e.g.
``stages.1.blocks.0.attn.kv.weight``, ``stages.3.norm.weight``."""
from .mmdet_pvt import mmdet_pvt_format
from .rules import CheckpointFormat, merge_kv, rename_keys


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


FORMATS = (
    CheckpointFormat('PVTv2', 'pvt_mm', _is_ours, dict),
    CheckpointFormat('PVTv2', 'official PVTv2', _is_official, _from_official),
    CheckpointFormat('PVTv2', 'timm pvt_v2', _is_timm, _from_timm),
    CheckpointFormat('PVTv2', 'HF PvtV2Model', _is_hf, _from_hf),
    mmdet_pvt_format('PVTv2'),
)
