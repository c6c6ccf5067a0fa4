"""Pretrained loading: layout detection, wrappers, strictness, safety, and the
``tools/model_converters/convert_checkpoint.py`` CLI (incl. official detection/segmentation
checkpoints). Numerics of every converter are in ``test_equivalence.py``."""
import importlib.util
import logging
import os.path as osp

import pytest
import torch

from helpers import PYRAMID_CVT, PYRAMID_V2, REPO_ROOT, load_tool
from pvt_mm import CvT, PVTv1, PVTv2
from pvt_mm.models import CheckpointError, load_pretrained
from references import (HF_CVT_TO_OFFICIAL, TIMM_V2_TO_OFFICIAL,
                        assert_stages_close, official_pvt_v1, randomize_,
                        renamed)

# The reference models' defaults: MLP ratios 8/8/4/4 (PVT), 4 (CvT).
SMALL_V2 = dict(PYRAMID_V2, mlp_ratios=(8, 8, 4, 4))
SMALL_V1 = dict(SMALL_V2)
SMALL_CVT = dict(PYRAMID_CVT, depths=(1, 2, 3), mlp_ratio=4)


# ------------------------------------------------------------ references

@pytest.fixture(scope='module')
def refs():
    """Random-weight reference models (built once for this module)."""
    timm = pytest.importorskip('timm')
    transformers = pytest.importorskip('transformers')
    from mmdet.models.backbones import pvt as mmdet_pvt
    small = dict(embed_dims=SMALL_V2['embed_dims'],
                 num_heads=SMALL_V2['num_heads'], depths=SMALL_V2['depths'])
    hf_v1 = transformers.PvtConfig(
        image_size=64, hidden_sizes=[16, 32, 48, 64],
        num_attention_heads=[1, 2, 3, 4], depths=[1, 1, 1, 1], num_labels=10)
    hf_v2 = transformers.PvtV2Config(
        hidden_sizes=[16, 32, 48, 64], num_attention_heads=[1, 2, 3, 4],
        depths=[1, 1, 1, 1], num_labels=10)
    hf_cvt = transformers.CvtConfig(embed_dim=[16, 32, 48], num_heads=[1, 2, 3],
                                    depth=[1, 2, 3], num_labels=10)
    return dict(
        timm_v2=randomize_(timm.create_model('pvt_v2_b0', **small)),
        timm_li=randomize_(timm.create_model('pvt_v2_b2_li', **small)),
        hf_v1=randomize_(transformers.PvtForImageClassification(hf_v1)),
        hf_v2=randomize_(transformers.PvtV2ForImageClassification(hf_v2)),
        hf_cvt=randomize_(transformers.CvtForImageClassification(hf_cvt)),
        mmdet_v1=randomize_(mmdet_pvt.PyramidVisionTransformer(
            embed_dims=16, num_heads=[1, 2, 3, 4], num_layers=[1, 1, 1, 1],
            pretrain_img_size=64)),
        mmdet_v2=randomize_(mmdet_pvt.PyramidVisionTransformerV2(
            embed_dims=16, num_heads=[1, 2, 3, 4], num_layers=[1, 1, 1, 1])),
    )


@pytest.fixture
def log_messages():
    """Messages sent to MMEngine's current logger during the test."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger.addHandler(handler)
    yield messages
    logger.removeHandler(handler)


def save(tmp_path, obj, name='ckpt.pth'):
    path = str(tmp_path / name)
    torch.save(obj, path)
    return path


V1_KW = dict(arch=SMALL_V1, pretrain_img_size=64)
V2_KW = dict(arch=SMALL_V2)
LI_KW = dict(arch=dict(SMALL_V2, linear=True))
CVT_KW = dict(arch=SMALL_CVT)

# (name, state dict from the references, model class and kwargs, format)
FORMAT_CASES = [
    ('official PVTv2', lambda r: renamed(r['timm_v2'].state_dict(),
                                         TIMM_V2_TO_OFFICIAL),
     PVTv2, V2_KW, 'official PVTv2'),
    ('official PVTv2-Li', lambda r: renamed(r['timm_li'].state_dict(),
                                            TIMM_V2_TO_OFFICIAL),
     PVTv2, LI_KW, 'official PVTv2'),
    ('timm', lambda r: r['timm_v2'].state_dict(), PVTv2, V2_KW, 'timm pvt_v2'),
    ('timm-li', lambda r: r['timm_li'].state_dict(), PVTv2, LI_KW,
     'timm pvt_v2'),
    ('HF PvtV2Model', lambda r: r['hf_v2'].pvt_v2.state_dict(), PVTv2, V2_KW,
     'HF PvtV2Model'),
    ('HF PvtV2ForImageClassification', lambda r: r['hf_v2'].state_dict(),
     PVTv2, V2_KW, 'HF PvtV2Model'),
    ('mmdet v2', lambda r: r['mmdet_v2'].state_dict(), PVTv2, V2_KW,
     'mmdet PyramidVisionTransformerV2'),
    ('official PVTv1', lambda r: official_pvt_v1(r['hf_v1'].state_dict()),
     PVTv1, V1_KW, 'official PVT'),
    ('HF PvtModel', lambda r: r['hf_v1'].pvt.state_dict(), PVTv1, V1_KW,
     'HF PvtModel'),
    ('HF PvtForImageClassification', lambda r: r['hf_v1'].state_dict(),
     PVTv1, V1_KW, 'HF PvtModel'),
    ('mmdet v1', lambda r: r['mmdet_v1'].state_dict(), PVTv1, V1_KW,
     'mmdet PyramidVisionTransformer'),
    ('official CvT', lambda r: renamed(r['hf_cvt'].state_dict(),
                                       HF_CVT_TO_OFFICIAL),
     CvT, CVT_KW, 'official CvT'),
    ('HF CvtModel', lambda r: r['hf_cvt'].cvt.state_dict(), CvT, CVT_KW,
     'HF CvtModel'),
    ('HF CvtForImageClassification', lambda r: r['hf_cvt'].state_dict(), CvT,
     CVT_KW, 'HF CvtModel'),
]


@pytest.mark.parametrize('case', FORMAT_CASES, ids=[c[0] for c in FORMAT_CASES])
def test_every_format_is_detected_and_loaded(tmp_path, refs, case):
    _, make_sd, cls, kwargs, fmt = case
    model = cls(**kwargs)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_pretrained(model, save(tmp_path, make_sd(refs)))
    assert report['format'] == fmt
    assert not report['missing'] and not report['mismatched']
    assert not report['unexpected']
    # Every pretrained tensor changed (nothing silently left at init) ...
    same = [k for k, v in model.state_dict().items()
            if torch.equal(v, before[k]) and 'num_batches' not in k
            and not k.startswith('out_norms.')]
    assert not same
    # ... and our own layout round-trips exactly.
    again = cls(**kwargs)
    report = load_pretrained(again, save(tmp_path, model.state_dict(), 'o.pth'))
    assert report['format'] == 'pvt_mm'
    for k, v in model.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k


@pytest.mark.parametrize('wrap', [
    lambda sd: {'state_dict': sd, 'meta': {'epoch': 3}},
    lambda sd: {'model': sd, 'optimizer': {}, 'epoch': 3},
    lambda sd: {'state_dict': {f'module.{k}': v for k, v in sd.items()}},
    lambda sd: {'state_dict': {**{f'backbone.{k}': v for k, v in sd.items()},
                               'neck.conv.weight': torch.zeros(1),
                               'bbox_head.fc.weight': torch.zeros(1)}},
], ids=['state_dict', 'model', 'module.', 'detector backbone.'])
def test_wrapped_checkpoints(tmp_path, refs, wrap):
    sd = renamed(refs['timm_v2'].state_dict(), TIMM_V2_TO_OFFICIAL)
    model = PVTv2(**V2_KW)
    report = load_pretrained(model, save(tmp_path, wrap(sd)))
    assert report['format'] == 'official PVTv2'
    assert torch.equal(model.stages[3].norm.weight, sd['norm4.weight'])


def test_explicit_prefix(tmp_path, refs):
    sd = {f'teacher.{k}': v for k, v in refs['timm_v2'].state_dict().items()}
    sd.update({f'student.{k}': torch.zeros_like(v)
               for k, v in refs['timm_v2'].state_dict().items()})
    model = PVTv2(**V2_KW, init_cfg=dict(
        type='Pretrained', checkpoint=save(tmp_path, sd), prefix='teacher.'))
    model.init_weights()
    assert torch.equal(model.stages[0].norm.weight,
                       refs['timm_v2'].stages[0].norm.weight)


def test_missing_weight_is_an_error_naming_it(tmp_path):
    sd = PVTv2(**V2_KW).state_dict()
    del sd['stages.1.blocks.0.attn.q.weight']
    with pytest.raises(CheckpointError,
                       match=r'missing.*stages\.1\.blocks\.0\.attn\.q\.weight'):
        load_pretrained(PVTv2(**V2_KW), save(tmp_path, sd))


def test_allow_partial_loads_the_rest_and_reports(tmp_path):
    source = PVTv2(**V2_KW)
    sd = source.state_dict()
    del sd['stages.1.blocks.0.attn.q.weight']
    model = PVTv2(**V2_KW, init_cfg=dict(
        type='Pretrained', checkpoint=save(tmp_path, sd), allow_partial=True))
    model.init_weights()
    assert torch.equal(model.stages[1].blocks[0].attn.kv.weight,
                       source.stages[1].blocks[0].attn.kv.weight)
    assert not torch.equal(model.stages[1].blocks[0].attn.q.weight,
                           source.stages[1].blocks[0].attn.q.weight)
    report = load_pretrained(PVTv2(**V2_KW), save(tmp_path, sd),
                             allow_partial=True)
    assert report['missing'] == ['stages.1.blocks.0.attn.q.weight']


def test_shape_mismatch_wrong_variant(tmp_path):
    """A b1 checkpoint into b0: same keys, other widths."""
    sd = PVTv2(arch='b1').state_dict()
    with pytest.raises(CheckpointError, match=r'(?s)shape mismatch.*'
                       r'stages\.0\.patch_embed\.proj\.weight: checkpoint '
                       r'\(64, 3, 7, 7\) vs model \(32, 3, 7, 7\)'):
        load_pretrained(PVTv2(arch='b0'), save(tmp_path, sd))


def test_deeper_variant_has_unexpected_blocks(tmp_path):
    """A b2 checkpoint into b1: same widths, more blocks -> error naming them."""
    sd = PVTv2(arch='b2').state_dict()
    with pytest.raises(CheckpointError, match=r'no place for.*stages\.0\.blocks'
                                              r'\.2\.'):
        load_pretrained(PVTv2(arch='b1'), save(tmp_path, sd))


def test_wrong_family_is_a_clear_error(tmp_path, refs):
    path = save(tmp_path, refs['hf_cvt'].state_dict())
    with pytest.raises(CheckpointError, match=r'CvT family.*PVTv2'):
        load_pretrained(PVTv2(**V2_KW), path)
    path = save(tmp_path, official_pvt_v1(refs['hf_v1'].state_dict()), 'v1.pth')
    with pytest.raises(CheckpointError, match=r'PVTv1 family.*PVTv2'):
        load_pretrained(PVTv2(**V2_KW), path)


def test_unrecognised_layout_lists_supported(tmp_path):
    path = save(tmp_path, {'conv1.weight': torch.zeros(1, 3, 7, 7)})
    with pytest.raises(CheckpointError, match=r'unrecognised.*conv1\.weight'
                                              r'.*official PVTv2'):
        load_pretrained(PVTv2(**V2_KW), path)


@pytest.mark.parametrize('case', FORMAT_CASES, ids=[c[0] for c in FORMAT_CASES])
def test_every_layout_matches_exactly_one_format(refs, case):
    """Detection never depends on the order of the formats: each published
    layout matches one format of one family, nothing else."""
    from pvt_mm.weights import FAMILY_FORMATS, unwrap
    _, make_sd, cls, _, fmt = case
    sd = unwrap(make_sd(refs))
    matches = [(f.family, f.name) for formats in FAMILY_FORMATS.values()
               for f in formats if f.detect(sd)]
    assert matches == [(cls.family, fmt)]
    assert cls.checkpoint_formats is FAMILY_FORMATS[cls.family]


def test_two_matching_formats_are_an_error():
    from pvt_mm.weights import CheckpointFormat, convert_state_dict
    sd = {'stages.0.patch_embed.proj.weight': torch.zeros(1)}
    both = [CheckpointFormat('PVTv2', name, lambda sd: True, dict)
            for name in ('layout A', 'layout B')]
    with pytest.raises(CheckpointError, match='several.*layout A.*layout B'):
        convert_state_dict(sd, 'PVTv2', formats=both)


def test_classification_leftovers_are_only_listed(tmp_path, refs,
                                                  log_messages):
    sd = official_pvt_v1(refs['hf_v1'].state_dict())
    report = load_pretrained(PVTv1(**V1_KW), save(tmp_path, sd))
    assert sorted(report['leftovers']) == [
        'head.bias', 'head.weight', 'norm.bias', 'norm.weight',
        'stages.3.cls_pos_embed', 'stages.3.cls_token']
    assert any('loaded 88/88 tensors' in m and 'ckpt.pth' in m and
               'ignored classification leftovers: ' in m and
               'head.weight' in m for m in log_messages), log_messages
    # The classification model uses them all.
    report = load_pretrained(PVTv1(out_type='cls_token', **V1_KW),
                             save(tmp_path, sd))
    assert report['leftovers'] == ['head.weight', 'head.bias']
    # CvT: the stage-3 class token of a dense backbone.
    sd = renamed(refs['hf_cvt'].state_dict(), HF_CVT_TO_OFFICIAL)
    report = load_pretrained(CvT(**CVT_KW), save(tmp_path, sd))
    assert 'stages.2.cls_token' in report['leftovers']


def test_dense_extras_are_fresh_not_missing(tmp_path, refs):
    """out_norms / extra_downsample are new weights: not required."""
    model = CvT(extra_downsample=True, out_indices=(0, 1, 2, 3), **CVT_KW)
    report = load_pretrained(model, save(tmp_path, refs['hf_cvt'].state_dict()))
    assert not report['missing']


class _Payload:
    """Pickles to a call that creates a file: proof of code execution."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, 'w'))


def test_pickle_with_code_is_refused(tmp_path):
    marker = tmp_path / 'pwned'
    sd = PVTv2(**V2_KW).state_dict()
    path = save(tmp_path, {'state_dict': sd, 'hook': _Payload(str(marker))})
    with pytest.raises(CheckpointError, match=r'refusing to load .*ckpt\.pth'
                                              r'.*--trust-pickle'):
        load_pretrained(PVTv2(**V2_KW), path)
    assert not marker.exists()


def test_truncated_file_names_the_file(tmp_path):
    path = save(tmp_path, PVTv2(**V2_KW).state_dict())
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match=r'cannot read checkpoint .*'
                                              r'ckpt\.pth.*truncated'):
        load_pretrained(PVTv2(**V2_KW), path)


def test_missing_file_and_empty_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match='nope.pth.*does not exist'):
        load_pretrained(PVTv2(**V2_KW), str(tmp_path / 'nope.pth'))
    with pytest.raises(CheckpointError, match='no tensors'):
        load_pretrained(PVTv2(**V2_KW), save(tmp_path, {'epoch': 3}))


def test_init_cfg_unknown_key(tmp_path):
    model = PVTv2(**V2_KW, init_cfg=dict(type='Pretrained', checkpoint='x.pth',
                                         strict=False))
    with pytest.raises(ValueError, match='strict'):
        model.init_weights()


# ------------------------------------------------------------ convert CLI

def _cli():
    return load_tool('model_converters/convert_checkpoint')


@pytest.fixture(scope='module')
def cli():
    return _cli()


def test_cli_converts_backbone_checkpoints(tmp_path, refs, cli, capsys):
    src = save(tmp_path, {'model': official_pvt_v1(refs['hf_v1'].state_dict())},
               'official.pth')
    dst = str(tmp_path / 'out' / 'ours.pth')
    assert cli.main([src, dst, '--family', 'PVTv1']) == 0
    assert 'official PVT' in capsys.readouterr().out
    converted = torch.load(dst, weights_only=True)
    assert converted['meta']['source_format'] == 'official PVT'
    a, b = PVTv1(**V1_KW), PVTv1(**V1_KW)
    assert load_pretrained(a, dst)['format'] == 'pvt_mm'
    load_pretrained(b, src)
    x = torch.randn(1, 3, 64, 64)
    assert_stages_close(a.eval()(x), b.eval()(x))
    # --family guards against the wrong file.
    assert cli.main([src, dst, '--family', 'CvT']) == 1
    assert 'weights of the PVTv1 family, but the model is CvT' in capsys.readouterr().err


class _Meta:
    """An arbitrary class: what old training scripts pickled into 'meta'."""


def test_cli_trust_pickle(tmp_path, cli, capsys):
    sd = PVTv2(**V2_KW).state_dict()
    src = save(tmp_path, {'state_dict': sd, 'meta': _Meta()}, 'old.pth')
    dst = str(tmp_path / 'new.pth')
    assert cli.main([src, dst]) == 1
    assert '--trust-pickle' in capsys.readouterr().err
    assert cli.main([src, dst, '--trust-pickle']) == 0
    report = load_pretrained(PVTv2(**V2_KW), dst)
    assert report['loaded'] == len(sd)


def _official_v2_detection_backbone(refs):
    """The official PVT detection code has no classifier head."""
    sd = renamed(refs['timm_v2'].state_dict(), TIMM_V2_TO_OFFICIAL)
    return {k: v for k, v in sd.items() if not k.startswith('head.')}


def test_cli_mmdet2_retinanet(tmp_path, refs, cli):
    """An mmdet 2.x RetinaNet checkpoint of the official PVT repo loads
    strictly into mmdet 3.x after conversion; FPN / RetinaHead keys are the
    same in both versions and are kept unchanged."""
    pytest.importorskip('mmdet')
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.registry import DefaultScope
    register_all_modules(init_default_scope=False)
    cfg = dict(
        type='RetinaNet', data_preprocessor=dict(type='DetDataPreprocessor'),
        backbone=dict(type='pvt_mm.PVTv2', **V2_KW),
        neck=dict(type='FPN', in_channels=[16, 32, 48, 64], out_channels=16,
                  start_level=1, add_extra_convs='on_input', num_outs=5),
        bbox_head=dict(
            type='RetinaHead', num_classes=3, in_channels=16, stacked_convs=1,
            feat_channels=16,
            anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4,
                                  scales_per_octave=3, ratios=[0.5, 1.0, 2.0],
                                  strides=[8, 16, 32, 64, 128]),
            bbox_coder=dict(type='DeltaXYWHBBoxCoder'),
            loss_cls=dict(type='FocalLoss', use_sigmoid=True),
            loss_bbox=dict(type='L1Loss')))
    with DefaultScope.overwrite_default_scope('mmdet'):
        detector = MODELS.build(cfg).eval()
        fresh = MODELS.build(cfg).eval()
    randomize_(detector)
    heads = {k: v for k, v in detector.state_dict().items()
             if not k.startswith('backbone.')}
    old = {f'backbone.{k}': v
           for k, v in _official_v2_detection_backbone(refs).items()}
    src = save(tmp_path, {'meta': {'mmdet_version': '2.11.0',
                                   'CLASSES': ('a', 'b', 'c')},
                          'state_dict': {**old, **heads}}, 'retina2x.pth')
    dst = str(tmp_path / 'retina3x.pth')
    assert cli.main([src, dst]) == 0
    fresh.load_state_dict(torch.load(dst, weights_only=True)['state_dict'],
                          strict=True)
    for k, v in heads.items():
        assert torch.equal(fresh.state_dict()[k], v), k
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert_stages_close(
            fresh.backbone(x),
            refs['timm_v2'].forward_intermediates(x, intermediates_only=True))


def test_cli_mmseg0_semantic_fpn(tmp_path, refs, cli):
    """An mmseg 0.x Semantic-FPN checkpoint with an official PVTv1 backbone
    (pos_embed4 keeps the class slot) loads strictly into mmseg 1.x."""
    pytest.importorskip('mmseg')
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = dict(
        type='EncoderDecoder', data_preprocessor=dict(type='SegDataPreProcessor'),
        backbone=dict(type='pvt_mm.PVTv1', **V1_KW),
        neck=dict(type='FPN', in_channels=[16, 32, 48, 64], out_channels=16,
                  num_outs=4),
        decode_head=dict(type='FPNHead', in_channels=[16] * 4,
                         in_index=[0, 1, 2, 3], feature_strides=[4, 8, 16, 32],
                         channels=8, num_classes=5,
                         norm_cfg=dict(type='BN', requires_grad=True),
                         loss_decode=dict(type='CrossEntropyLoss')))
    with DefaultScope.overwrite_default_scope('mmseg'):
        segmentor = randomize_(MODELS.build(cfg))
        fresh = MODELS.build(cfg).eval()
    heads = {k: v for k, v in segmentor.state_dict().items()
             if not k.startswith('backbone.')}
    backbone = {k: v for k, v in official_pvt_v1(refs['hf_v1'].state_dict())
                .items() if not k.startswith(('head.', 'norm.', 'cls_token'))}
    assert backbone['pos_embed4'].shape[1] == 1 + 2 * 2
    src = save(tmp_path, {'state_dict': {
        **{f'backbone.{k}': v for k, v in backbone.items()}, **heads}},
        'semfpn0x.pth')
    dst = str(tmp_path / 'semfpn1x.pth')
    assert cli.main([src, dst, '--family', 'PVTv1']) == 0
    fresh.load_state_dict(torch.load(dst, weights_only=True)['state_dict'],
                          strict=True)
    reference = PVTv1(with_cls_token=False, **V1_KW).eval()
    load_pretrained(reference, src)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert_stages_close(fresh.backbone(x), reference(x))


def test_weights_package_and_the_old_import_paths():
    """Weight I/O, layouts and loading live in pvt_mm.weights; the modules
    they moved from give the same objects, so existing imports work."""
    import pvt_mm.models.checkpoint as old
    import pvt_mm.models.formats as old_formats
    import pvt_mm.weights as weights
    from pvt_mm.weights import formats, io, load
    assert old.load_pretrained is weights.load_pretrained is \
        load.load_pretrained
    assert old.CheckpointError is weights.CheckpointError is \
        io.CheckpointError
    assert old.load_file is io.load_file
    assert old_formats.FAMILY_FORMATS is formats.FAMILY_FORMATS
    assert old_formats.CheckpointFormat is formats.CheckpointFormat
    from pvt_mm import PVTv2
    assert PVTv2.checkpoint_formats is formats.PVTV2_FORMATS
