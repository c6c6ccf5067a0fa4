"""Checkpoint layouts of PVTv1, converted to our keys (the stage-4 class
slot of the official position embedding becomes ``cls_pos_embed``)."""
from .mmdet_pvt import mmdet_pvt_format
from .rules import CheckpointFormat, merge_kv, rename_keys


def _is_ours(sd):
    return 'stages.0.pos_embed' in sd


def _split_cls_pos(sd):
    """Our stage-4 position embedding has no class slot; it gets its own
    ``cls_pos_embed`` (``(1, 1 + h*w, C)`` -> ``(1, 1, C)`` + ``(1, h*w, C)``)."""
    out = dict(sd)
    last = max(int(k.split('.')[1]) for k in sd if k.startswith('stages.'))
    key = f'stages.{last}.pos_embed'
    pos = out.get(key)
    if pos is not None and int(pos.shape[1] ** 0.5) ** 2 != pos.shape[1]:
        out[f'stages.{last}.cls_pos_embed'] = pos[:, :1]
        out[key] = pos[:, 1:]
    return out


def _is_official(sd):
    return 'patch_embed1.proj.weight' in sd and 'pos_embed1' in sd


def _from_official(sd):
    sd = rename_keys(sd, [
        (r'^patch_embed(\d)\.', lambda m: f'stages.{int(m[1]) - 1}.patch_embed.'),
        (r'^pos_embed(\d)$', lambda m: f'stages.{int(m[1]) - 1}.pos_embed'),
        (r'^block(\d)\.', lambda m: f'stages.{int(m[1]) - 1}.blocks.'),
        (r'^cls_token$', 'stages.3.cls_token'),
    ])
    return _split_cls_pos(sd)


def _is_hf(sd):
    return any(k.startswith(('encoder.patch_embeddings.0.', 'pvt.encoder.'))
               for k in sd)


def _from_hf(sd):
    sd = rename_keys(sd, [
        (r'^pvt\.', ''),
        (r'^encoder\.patch_embeddings\.(\d)\.projection\.',
         r'stages.\1.patch_embed.proj.'),
        (r'^encoder\.patch_embeddings\.(\d)\.layer_norm\.',
         r'stages.\1.patch_embed.norm.'),
        (r'^encoder\.patch_embeddings\.(\d)\.position_embeddings$',
         r'stages.\1.pos_embed'),
        (r'^encoder\.patch_embeddings\.(\d)\.cls_token$', r'stages.\1.cls_token'),
        (r'^encoder\.block\.(\d)\.(\d+)\.', r'stages.\1.blocks.\2.'),
        (r'\.layer_norm_1\.', '.norm1.'),
        (r'\.layer_norm_2\.', '.norm2.'),
        (r'\.attention\.self\.query\.', '.attn.q.'),
        (r'\.attention\.self\.sequence_reduction\.', '.attn.sr.'),
        (r'\.attention\.self\.layer_norm\.', '.attn.norm.'),
        (r'\.attention\.self\.', '.attn.'),
        (r'\.attention\.output\.dense\.', '.attn.proj.'),
        (r'\.mlp\.dense1\.', '.mlp.fc1.'),
        (r'\.mlp\.dense2\.', '.mlp.fc2.'),
        (r'^encoder\.layer_norm\.', 'norm.'),
        (r'^classifier\.', 'head.'),
    ])
    return _split_cls_pos(merge_kv(sd, 'key', 'value', 'kv'))


FORMATS = (
    CheckpointFormat('PVTv1', 'pvt_mm', _is_ours, dict),
    CheckpointFormat('PVTv1', 'official PVT', _is_official, _from_official),
    CheckpointFormat('PVTv1', 'HF PvtModel', _is_hf, _from_hf),
    mmdet_pvt_format('PVTv1'),
)
