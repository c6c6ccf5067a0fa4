"""Numerical equivalence with the reference implementations.

Every test builds a reference model (timm, HF transformers, mmdet) with
random weights, saves its state dict with ``torch.save`` and loads the file
into our backbone through ``init_cfg=dict(type='Pretrained', ...)``, so the
layout detection and the converters are exercised end to end. A second
checkpoint in the *official* layout (the keys of the PVT / CvT repositories)
is derived from the reference keys with the inverse mappings of
references.py. Every
returned stage must match within 1e-4 (fp32).
"""
import pytest
import torch
import torch.nn.functional as F

from pvt_mm import CvT, PVTv1, PVTv2
from references import (ATOL, HF_CVT_TO_OFFICIAL, TIMM_V2_TO_OFFICIAL,
                        assert_stages_close, load_ours, official_pvt_v1,
                        randomize_, renamed)


def test_official_inverse_maps_produce_official_names():
    """The derived official layouts have exactly the official key shapes."""
    timm = pytest.importorskip('timm')
    sd = renamed(timm.create_model('pvt_v2_b0').state_dict(),
                 TIMM_V2_TO_OFFICIAL)
    assert {'patch_embed1.proj.weight', 'patch_embed4.norm.bias',
            'block1.0.attn.kv.weight', 'block4.1.mlp.dwconv.dwconv.weight',
            'norm4.weight', 'head.weight'} <= set(sd)
    assert not [k for k in sd if k.startswith('stages.')]


# ---------------------------------------------------------------- timm

@pytest.mark.parametrize('arch', ['b0', 'b2_li'])
def test_timm_pvt_v2(tmp_path, arch):
    """b0 as published; b2_li with one block per stage (widths, heads,
    ratios and linear SRA as published) to stay fast."""
    timm = pytest.importorskip('timm')
    depths = dict(depths=(1, 1, 1, 1)) if arch == 'b2_li' else {}
    ref = randomize_(timm.create_model(f'pvt_v2_{arch}', pretrained=False,
                                       **depths))
    timm_sd = ref.state_dict()
    arch = dict(PVTv2.arch_settings[arch], **depths)
    models = {
        'timm': load_ours(tmp_path, PVTv2, timm_sd, 'timm.pth', arch=arch),
        'official': load_ours(tmp_path, PVTv2,
                              {'model': renamed(timm_sd, TIMM_V2_TO_OFFICIAL)},
                              'official.pth', arch=arch),
    }
    for shape in [(1, 3, 64, 64), (2, 3, 33, 47)]:
        x = torch.randn(shape)
        with torch.no_grad():
            refs = ref.forward_intermediates(x, intermediates_only=True)
            for model in models.values():
                assert_stages_close(model(x), refs)


def test_timm_pvt_v2_classification(tmp_path):
    """avg_featmap + the checkpoint's head reproduce timm's logits."""
    timm = pytest.importorskip('timm')
    ref = randomize_(timm.create_model('pvt_v2_b0', pretrained=False))
    model = load_ours(tmp_path, PVTv2, ref.state_dict(), arch='b0',
                      out_type='avg_featmap', out_indices=(3, ))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feat, = model(x)
        logits = F.linear(feat, ref.head.weight, ref.head.bias)
        assert (logits - ref(x)).abs().max() <= ATOL


# ---------------------------------------------------------------- HF

def _hf_pvt_v2(linear):
    transformers = pytest.importorskip('transformers')
    cfg = transformers.PvtV2Config(
        hidden_sizes=[16, 32, 48, 64], num_attention_heads=[1, 2, 3, 4],
        depths=[1, 2, 1, 1], mlp_ratios=[8, 8, 4, 4],
        linear_attention=linear, num_labels=10)
    return randomize_(transformers.PvtV2ForImageClassification(cfg))


_SMALL_V2 = dict(embed_dims=(16, 32, 48, 64), num_heads=(1, 2, 3, 4),
                 depths=(1, 2, 1, 1), mlp_ratios=(8, 8, 4, 4),
                 sr_ratios=(8, 4, 2, 1))


@pytest.mark.parametrize('linear', [False, True])
def test_hf_pvt_v2(tmp_path, linear):
    ref = _hf_pvt_v2(linear)
    full_sd = ref.state_dict()                       # pvt_v2.* + classifier.*
    model_sd = ref.pvt_v2.state_dict()               # PvtV2Model / Backbone
    arch = dict(_SMALL_V2, linear=linear)
    kw = dict(arch=arch, norm_eps=1e-6, embed_norm_eps=1e-6)
    dense = [load_ours(tmp_path, PVTv2, full_sd, 'cls.pth', **kw),
             load_ours(tmp_path, PVTv2, model_sd, 'model.pth', **kw)]
    cls_model = load_ours(tmp_path, PVTv2, full_sd, 'cls.pth',
                          out_type='avg_featmap', out_indices=(3, ), **kw)
    for shape in [(1, 3, 64, 64), (2, 3, 45, 71)]:
        x = torch.randn(shape)
        with torch.no_grad():
            out = ref(x, output_hidden_states=True)
            for model in dense:
                assert_stages_close(model(x), out.hidden_states)
            feat, = cls_model(x)
            logits = F.linear(feat, ref.classifier.weight, ref.classifier.bias)
            assert (logits - out.logits).abs().max() <= ATOL


def test_hf_pvt_v2_backbone(tmp_path):
    transformers = pytest.importorskip('transformers')
    cfg = transformers.PvtV2Config(
        hidden_sizes=[16, 32, 48, 64], num_attention_heads=[1, 2, 3, 4],
        depths=[1, 1, 1, 1], out_features=['stage1', 'stage2', 'stage3',
                                           'stage4'])
    ref = randomize_(transformers.PvtV2Backbone(cfg))
    model = load_ours(tmp_path, PVTv2, ref.state_dict(),
                      arch=dict(_SMALL_V2, depths=(1, 1, 1, 1)),
                      norm_eps=1e-6, embed_norm_eps=1e-6)
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        assert_stages_close(model(x), ref(x).feature_maps)


def test_hf_pvt_v1(tmp_path):
    """HF runs the class token through stage 4 and is built for one image
    size; compare at that size with ``with_cls_token=True``."""
    transformers = pytest.importorskip('transformers')
    cfg = transformers.PvtConfig(
        image_size=64, hidden_sizes=[16, 32, 48, 64],
        num_attention_heads=[1, 2, 3, 4], depths=[1, 2, 1, 2],
        mlp_ratios=[8, 8, 4, 4], num_labels=10)
    ref = randomize_(transformers.PvtForImageClassification(cfg))
    hf_sd = ref.state_dict()
    arch = dict(embed_dims=(16, 32, 48, 64), num_heads=(1, 2, 3, 4),
                depths=(1, 2, 1, 2), mlp_ratios=(8, 8, 4, 4),
                sr_ratios=(8, 4, 2, 1))
    kw = dict(arch=arch, pretrain_img_size=64, norm_eps=1e-6,
              embed_norm_eps=1e-6)
    official = official_pvt_v1(hf_sd)
    assert official['pos_embed4'].shape[1] == 1 + 2 * 2  # the cls slot
    dense = [load_ours(tmp_path, PVTv1, sd, name, with_cls_token=True, **kw)
             for name, sd in [('hf.pth', hf_sd), ('official.pth', official)]]
    classify = [load_ours(tmp_path, PVTv1, sd, name, out_type='cls_token',
                          **kw)
                for name, sd in [('hf.pth', hf_sd), ('official.pth', official)]]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = ref(x, output_hidden_states=True)
        ends = torch.tensor(cfg.depths).cumsum(0) - 1
        refs = []
        for i, end in enumerate(ends.tolist()):
            tokens = out.hidden_states[end]
            if i == 3:
                tokens = tokens[:, 1:]          # drop the class token
            side = 64 // 4 // 2 ** i
            refs.append(tokens.reshape(2, side, side, -1).permute(0, 3, 1, 2))
        for model in dense:
            assert_stages_close(model(x), refs)
        for model in classify:
            feat, = model(x)
            logits = F.linear(feat, ref.classifier.weight, ref.classifier.bias)
            assert (logits - out.logits).abs().max() <= ATOL


def test_hf_cvt(tmp_path):
    """HF's Cvt uses GELU (official: QuickGELU) and runs the stage-3 class
    token; its hidden states are the un-normed stage maps."""
    transformers = pytest.importorskip('transformers')
    cfg = transformers.CvtConfig(embed_dim=[16, 32, 48], num_heads=[1, 2, 3],
                                 depth=[1, 2, 3], num_labels=10)
    ref = randomize_(transformers.CvtForImageClassification(cfg))
    hf_sd = ref.state_dict()
    official = renamed(hf_sd, HF_CVT_TO_OFFICIAL)
    assert 'stage2.blocks.0.attn.conv_proj_k.bn.running_var' in official
    arch = dict(embed_dims=(16, 32, 48), num_heads=(1, 2, 3), depths=(1, 2, 3),
                patch_sizes=(7, 3, 3), patch_strides=(4, 2, 2), mlp_ratio=4)
    kw = dict(arch=arch, act_cfg=dict(type='GELU'))
    dense = [load_ours(tmp_path, CvT, sd, name, with_cls_token=True,
                       out_norms=False, **kw)
             for name, sd in [('hf.pth', hf_sd), ('official.pth', official)]]
    classify = [load_ours(tmp_path, CvT, sd, name, out_type='cls_token', **kw)
                for name, sd in [('hf.pth', hf_sd), ('official.pth', official)]]
    for shape in [(1, 3, 64, 64), (2, 3, 37, 53)]:
        x = torch.randn(shape)
        with torch.no_grad():
            out = ref(x, output_hidden_states=True)
            for model in dense:
                assert_stages_close(model(x), out.hidden_states)
            for model in classify:
                feat, = model(x)
                logits = F.linear(feat, ref.classifier.weight,
                                  ref.classifier.bias)
                assert (logits - out.logits).abs().max() <= ATOL


def test_cvt_hf_model_checkpoint(tmp_path):
    """A bare ``CvtModel`` state dict (no ``cvt.`` prefix, no head)."""
    transformers = pytest.importorskip('transformers')
    cfg = transformers.CvtConfig(embed_dim=[16, 32, 48], num_heads=[1, 2, 3],
                                 depth=[1, 2, 3])
    ref = randomize_(transformers.CvtModel(cfg, add_pooling_layer=False))
    model = load_ours(
        tmp_path, CvT, ref.state_dict(), with_cls_token=True, out_norms=False,
        act_cfg=dict(type='GELU'),
        arch=dict(embed_dims=(16, 32, 48), num_heads=(1, 2, 3),
                  depths=(1, 2, 3), patch_sizes=(7, 3, 3),
                  patch_strides=(4, 2, 2), mlp_ratio=4))
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        assert_stages_close(model(x),
                            ref(x, output_hidden_states=True).hidden_states)


# ---------------------------------------------------------------- mmdet

def _mmdet_backbone(name, **kwargs):
    pytest.importorskip('mmdet')
    from mmdet.models.backbones import pvt
    return randomize_(getattr(pvt, name)(**kwargs))


@pytest.mark.parametrize('name,cls,arch', [
    ('PyramidVisionTransformer', PVTv1, 'tiny'),
    ('PyramidVisionTransformerV2', PVTv2, 'b0'),
])
def test_mmdet_builtin(tmp_path, name, cls, arch):
    """mmdet's built-ins use LayerNorm eps 1e-6 everywhere."""
    depths = dict(tiny=[2, 2, 2, 2], b0=[2, 2, 2, 2])[arch]
    dims = dict(tiny=64, b0=32)[arch]
    ref = _mmdet_backbone(name, embed_dims=dims, num_layers=depths)
    # As saved by an mmdet 3.x detector: backbone.* plus neck/head keys.
    detector_sd = {f'backbone.{k}': v for k, v in ref.state_dict().items()}
    detector_sd['neck.lateral_convs.0.conv.weight'] = torch.zeros(1)
    model = load_ours(tmp_path, cls, {'state_dict': detector_sd, 'meta': {}},
                      arch=arch, norm_eps=1e-6, embed_norm_eps=1e-6)
    for shape in [(1, 3, 64, 64), (1, 3, 65, 97)]:
        x = torch.randn(shape)
        with torch.no_grad():
            assert_stages_close(model(x), ref(x))
