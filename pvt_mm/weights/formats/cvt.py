"""Checkpoint layouts of CvT, converted to our keys."""
from .rules import CheckpointFormat, rename_keys


def _is_ours(sd):
    return 'stages.0.patch_embed.proj.weight' in sd and any(
        '.attn.conv_proj_q.' in k for k in sd)


def _is_official(sd):
    return 'stage0.patch_embed.proj.weight' in sd


def _from_official(sd):
    return rename_keys(sd, [(r'^stage(\d)\.', r'stages.\1.')])


def _is_hf(sd):
    return any(k.startswith(('encoder.stages.0.embedding.',
                             'cvt.encoder.stages.0.embedding.')) for k in sd)


def _from_hf(sd):
    return rename_keys(sd, [
        (r'^cvt\.', ''),
        (r'^encoder\.stages\.(\d)\.', r'stages.\1.'),
        (r'\.embedding\.convolution_embeddings\.projection\.', '.patch_embed.proj.'),
        (r'\.embedding\.convolution_embeddings\.normalization\.', '.patch_embed.norm.'),
        (r'\.layers\.(\d+)\.', r'.blocks.\1.'),
        (r'\.attention\.attention\.convolution_projection_(q|k|v)\w*'
         r'\.convolution_projection\.convolution\.', r'.attn.conv_proj_\1.conv.'),
        (r'\.attention\.attention\.convolution_projection_(q|k|v)\w*'
         r'\.convolution_projection\.normalization\.', r'.attn.conv_proj_\1.bn.'),
        (r'\.attention\.attention\.projection_(q|k|v)\w*\.', r'.attn.proj_\1.'),
        (r'\.attention\.output\.dense\.', '.attn.proj.'),
        (r'\.intermediate\.dense\.', '.mlp.fc1.'),
        (r'\.output\.dense\.', '.mlp.fc2.'),
        (r'\.layernorm_before\.', '.norm1.'),
        (r'\.layernorm_after\.', '.norm2.'),
        (r'^layernorm\.', 'norm.'),
        (r'^classifier\.', 'head.'),
    ])


FORMATS = (
    CheckpointFormat('CvT', 'pvt_mm', _is_ours, dict),
    CheckpointFormat('CvT', 'official CvT', _is_official, _from_official),
    CheckpointFormat('CvT', 'HF CvtModel', _is_hf, _from_hf),
)
