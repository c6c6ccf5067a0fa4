"""Reference-implementation helpers shared by test_equivalence.py and
test_checkpoints.py: weight perturbation, key renaming, the inverse maps
from reference layouts to the official PVT / CvT keys, stage comparison."""
import re

import torch

ATOL = 1e-4


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Perturb every weight and BN statistic so that no norm is the identity
    and no bias is zero (a converter that drops one cannot go unnoticed)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            std = 0.02 if p.dim() > 1 else 0.1
            p.add_(torch.randn(p.shape, generator=g) * std)
        for name, b in model.named_buffers():
            if name.endswith('running_mean'):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
            elif name.endswith('running_var'):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
    return model.eval()


def renamed(sd, rules):
    """Apply ``(regex, replacement)`` rules in order to every key."""
    out = {}
    for k, v in sd.items():
        for pattern, repl in rules:
            k = re.sub(pattern, repl, k)
        out[k] = v
    return out


def fuse_kv(sd, key='.key.', value='.value.', kv='.kv.'):
    """Separate key/value linears -> one official ``kv`` (keys first)."""
    out = {}
    for k, v in sd.items():
        if key in k:
            out[k.replace(key, kv)] = torch.cat(
                [v, sd[k.replace(key, value)]], dim=0)
        elif value not in k:
            out[k] = v
    return out


def load_ours(tmp_path, cls, sd, name='ref.pth', **kwargs):
    """Save ``sd`` and build ``cls`` from it the way a config would."""
    path = tmp_path / name
    torch.save(sd, path)
    model = cls(init_cfg=dict(type='Pretrained', checkpoint=str(path)),
                **kwargs)
    model.init_weights()
    return model.eval()


def assert_stages_close(ours, refs):
    assert len(ours) == len(refs)
    for i, (o, r) in enumerate(zip(ours, refs)):
        assert o.shape == r.shape, (i, o.shape, r.shape)
        diff = (o - r).abs().max().item()
        assert diff <= ATOL, f'stage {i}: max abs diff {diff:.2e}'


# ------------------------------------------------- inverse (official) maps
# timm pvt_v2 keys -> keys of the official PVTv2 repository.
TIMM_V2_TO_OFFICIAL = [
    (r'^patch_embed\.', 'patch_embed1.'),
    (r'^stages\.(\d)\.downsample\.', lambda m: f'patch_embed{int(m[1]) + 1}.'),
    (r'^stages\.(\d)\.blocks\.(\d+)\.',
     lambda m: f'block{int(m[1]) + 1}.{m[2]}.'),
    (r'^stages\.(\d)\.norm\.', lambda m: f'norm{int(m[1]) + 1}.'),
    (r'\.mlp\.dwconv\.', '.mlp.dwconv.dwconv.'),
]

# HF PvtModel keys -> official PVTv1 (kv fused afterwards).
HF_V1_TO_OFFICIAL = [
    (r'^pvt\.', ''),
    (r'^encoder\.patch_embeddings\.(\d)\.projection\.',
     lambda m: f'patch_embed{int(m[1]) + 1}.proj.'),
    (r'^encoder\.patch_embeddings\.(\d)\.layer_norm\.',
     lambda m: f'patch_embed{int(m[1]) + 1}.norm.'),
    (r'^encoder\.patch_embeddings\.(\d)\.position_embeddings$',
     lambda m: f'pos_embed{int(m[1]) + 1}'),
    (r'^encoder\.patch_embeddings\.\d\.cls_token$', 'cls_token'),
    (r'^encoder\.block\.(\d)\.(\d+)\.',
     lambda m: f'block{int(m[1]) + 1}.{m[2]}.'),
    (r'\.layer_norm_1\.', '.norm1.'),
    (r'\.layer_norm_2\.', '.norm2.'),
    (r'\.attention\.self\.query\.', '.attn.q.'),
    (r'\.attention\.self\.key\.', '.attn.key.'),
    (r'\.attention\.self\.value\.', '.attn.value.'),
    (r'\.attention\.self\.sequence_reduction\.', '.attn.sr.'),
    (r'\.attention\.self\.layer_norm\.', '.attn.norm.'),
    (r'\.attention\.output\.dense\.', '.attn.proj.'),
    (r'\.mlp\.dense1\.', '.mlp.fc1.'),
    (r'\.mlp\.dense2\.', '.mlp.fc2.'),
    (r'^encoder\.layer_norm\.', 'norm.'),
    (r'^classifier\.', 'head.'),
]

# HF CvtModel keys -> official CvT.
_QKV = dict(query='q', key='k', value='v')
HF_CVT_TO_OFFICIAL = [
    (r'^cvt\.', ''),
    (r'^encoder\.stages\.(\d)\.embedding\.convolution_embeddings\.projection\.',
     r'stage\1.patch_embed.proj.'),
    (r'^encoder\.stages\.(\d)\.embedding\.convolution_embeddings\.'
     r'normalization\.', r'stage\1.patch_embed.norm.'),
    (r'^encoder\.stages\.(\d)\.cls_token$', r'stage\1.cls_token'),
    (r'^encoder\.stages\.(\d)\.layers\.(\d+)\.', r'stage\1.blocks.\2.'),
    (r'\.attention\.attention\.convolution_projection_(query|key|value)\.'
     r'convolution_projection\.convolution\.',
     lambda m: f'.attn.conv_proj_{_QKV[m[1]]}.conv.'),
    (r'\.attention\.attention\.convolution_projection_(query|key|value)\.'
     r'convolution_projection\.normalization\.',
     lambda m: f'.attn.conv_proj_{_QKV[m[1]]}.bn.'),
    (r'\.attention\.attention\.projection_(query|key|value)\.',
     lambda m: f'.attn.proj_{_QKV[m[1]]}.'),
    (r'\.attention\.output\.dense\.', '.attn.proj.'),
    (r'\.intermediate\.dense\.', '.mlp.fc1.'),
    (r'\.output\.dense\.', '.mlp.fc2.'),
    (r'\.layernorm_before\.', '.norm1.'),
    (r'\.layernorm_after\.', '.norm2.'),
    (r'^layernorm\.', 'norm.'),
    (r'^classifier\.', 'head.'),
]


def official_pvt_v1(hf_sd):
    return fuse_kv(renamed(hf_sd, HF_V1_TO_OFFICIAL), '.attn.key.',
                   '.attn.value.', '.attn.kv.')
