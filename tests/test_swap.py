"""pvt_mm.swap_backbone: a pvt_mm backbone in MMDetection's / MMSegmentation's
own configs, one call (docs/use_in_your_project.md). Builds each swapped
model and runs its backbone + neck (+ segmentation head) on a small image;
the training runs are tests/tools/test_compat_matrix.py's."""
import importlib

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from helpers import load_tool
from pvt_mm import swap_backbone
from pvt_mm.engine.runner import load_config
from pvt_mm.swap import (IMAGENET_MEAN, swap_config_text,
                         swap_overrides)

pytestmark = pytest.mark.usefixtures('fast_config_parsing')

RESNET_KWARGS = ('depth', 'frozen_stages', 'norm_eval', 'style', 'num_stages',
                 'norm_cfg', 'strides', 'dilations', 'contract_dilation')

# (config, backbone, stages the old backbone fed forward, what reads them)
CASES = [
    ('mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', 'pvt_v2_b0',
     (0, 1, 2, 3), 'neck'),
    ('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', 'pvt_v1_tiny',
     (0, 1, 2, 3), 'neck'),
    ('mmdet::detr/detr_r50_8xb2-150e_coco.py', 'cvt_13', (3, ), 'neck'),
    ('mmdet::yolof/yolof_r50-c5_8xb8-1x_coco.py', 'pvt_v2_b0', (3, ), 'neck'),
    ('mmdet::deformable_detr/deformable-detr_r50_16xb2-50e_coco.py',
     'cvt_13', (1, 2, 3), 'neck'),
    ('mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco.py', 'pvt_v2_b0',
     (0, 1, 2, 3), 'panoptic_head'),
    ('mmseg::upernet/upernet_r50_4xb4-80k_ade20k-512x512.py', 'cvt_13',
     (0, 1, 2, 3), 'decode_head'),
    ('mmseg::pspnet/pspnet_r50-d8_4xb4-80k_ade20k-512x512.py', 'pvt_v2_b0',
     (0, 1, 2, 3), 'decode_head'),
]


def _scope(name):
    lib = name.split('::')[0]
    importlib.import_module(f'{lib}.utils').register_all_modules(
        init_default_scope=False)
    init_default_scope(lib)
    return lib


def _no_syncbn(node):
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
        for v in node.values():
            _no_syncbn(v)
    elif isinstance(node, list):
        for v in node:
            _no_syncbn(v)


def _unscoped(node):
    if isinstance(node, dict):
        return {k: _unscoped(v) for k, v in node.items() if k != '_scope_'}
    if isinstance(node, (list, tuple)):
        return type(node)(_unscoped(v) for v in node)
    return node


@pytest.mark.parametrize('name,backbone,stages,reader', CASES,
                         ids=[c[0].split('/')[0] + '-' + c[1] for c in CASES])
def test_swapped_config_builds_and_runs(name, backbone, stages, reader):
    lib = _scope(name)
    cfg = swap_backbone(load_config(name), backbone, pretrained=None)
    bb = cfg.model.backbone
    assert bb.type.startswith('pvt_mm.') and tuple(bb.out_indices) == stages
    assert not set(RESNET_KWARGS) & set(bb), 'ResNet kwargs carried over'
    assert bb.init_cfg is None
    assert cfg.model.get('pretrained') is None
    assert cfg.model.data_preprocessor.mean == IMAGENET_MEAN
    assert 'pvt_mm' in cfg.custom_imports.imports
    _no_syncbn(cfg.model)  # SyncBN needs a process group; not ours to fix
    from mmengine.registry import MODELS
    model = MODELS.build(cfg.model).eval()
    assert type(model.backbone).__module__.startswith('pvt_mm.')
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        feats = model.backbone(x)
        assert [f.shape[1] for f in feats] == model.backbone.out_channels
        assert [x.shape[-1] // f.shape[-1] for f in feats] == [
            4 * 2 ** s for s in stages]
        if lib == 'mmseg':
            out = model._forward(x)
            assert out.shape[:2] == (1, 150)
        elif reader == 'neck':
            assert len(model.extract_feat(x)) >= 1
        else:  # Mask2Former: the head's pixel decoder reads the backbone
            model.panoptic_head.pixel_decoder(list(feats))


def test_segmentor_pretrained_never_reaches_the_pvt(tmp_path):
    """Negative controls for MMSegmentation's ``model.pretrained``: the
    UPerNet base's ResNet checkpoint is cleared, the backbone's init_cfg is
    ours; a ResNet checkpoint given as ours is refused when loading, never
    loaded partially."""
    name = 'mmseg::upernet/upernet_r50_4xb4-80k_ade20k-512x512.py'
    original = load_config(name)
    resnet = original.model.pretrained
    assert 'resnet' in resnet
    cfg = swap_backbone(original, 'pvt_v2_b0')
    assert cfg.model.pretrained is None
    assert resnet not in cfg.pretty_text
    assert cfg.model.backbone.init_cfg == dict(
        type='Pretrained', checkpoint='https://github.com/whai362/PVT/'
        'releases/download/v2/pvt_v2_b0.pth')
    assert original.model.pretrained == resnet  # the input is not edited

    fake = tmp_path / 'resnet50.pth'
    torch.save({'conv1.weight': torch.zeros(64, 3, 7, 7),
                'layer1.0.conv1.weight': torch.zeros(64, 64, 1, 1),
                'fc.weight': torch.zeros(1000, 2048)}, str(fake))
    cfg = swap_backbone(original, 'pvt_v2_b0', pretrained=str(fake))
    _scope(name)
    from pvt_mm import PVTv2
    bb = dict(cfg.model.backbone)
    bb.pop('type')
    with pytest.raises(Exception, match=r'(?i)layout|format|recogni'):
        PVTv2(**bb).init_weights()


def test_caffe_config_gets_imagenet_rgb_normalisation():
    cfg = load_config('mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py')
    assert cfg.model.data_preprocessor.bgr_to_rgb is False
    cfg = swap_backbone(cfg, 'pvt_v2_b0', pretrained=None)
    dp = cfg.model.data_preprocessor
    assert dp.bgr_to_rgb is True and dp.mean == IMAGENET_MEAN


def test_unknown_cases_are_clear_errors():
    cfg = load_config('mmdet::cornernet/'
                      'cornernet_hourglass104_8xb6-210e-mstest_coco.py')
    with pytest.raises(ValueError, match='HourglassNet.*by hand'):
        swap_overrides(cfg, 'pvt_v2_b0')
    cfg = load_config('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py')
    with pytest.raises(ValueError, match='unknown backbone .pvt_v9'):
        swap_overrides(cfg, 'pvt_v9')
    cfg.model.neck.in_channels = [1, 2, 3, 4]  # not the ResNet's widths
    with pytest.raises(ValueError, match=r'set its input channels by hand '
                       r'to \[32, 64, 160, 256\]'):
        swap_overrides(cfg, 'pvt_v2_b0')


def test_written_config_inherits_and_equals_the_helper(tmp_path):
    """tools/misc/swap_backbone.py writes a config that inherits the
    original; parsed, its model is the helper's."""
    name = 'mmseg::fastfcn/fastfcn_r50-d32_jpu_psp_4xb4-80k_ade20k-512x512.py'
    out = tmp_path / 'fastfcn_cvt_13.py'
    load_tool('misc/swap_backbone').main([name, 'cvt_13', '-o', str(out),
                                          '--from-scratch'])
    text = out.read_text()
    assert text.count('_base_') == 1 and name in text
    assert 'depth' not in text and 'open-mmlab://resnet' not in text
    written = Config.fromfile(str(out))
    helper = swap_backbone(load_config(name), 'cvt_13', pretrained=None)
    # (a `mmseg::` base tags its dicts with `_scope_='mmseg'`)
    assert _unscoped(written.model.to_dict()) == helper.model.to_dict()
    # JPU passes its first inputs through: the auxiliary head reads stage 2
    # of CvT-13 (384 channels), the decode head the JPU's own 2048.
    assert tuple(helper.model.neck.in_channels) == (192, 384, 384)
    assert helper.model.auxiliary_head.in_channels == 384
    assert helper.model.decode_head.in_channels == 2048


def test_knet_inner_head_and_list_necks():
    cfg = swap_backbone(load_config(
        'mmseg::knet/knet-s3_r50-d8_upernet_8xb2-adamw-80k_ade20k-512x512.py'),
        'pvt_v2_b0', pretrained=None)
    assert cfg.model.decode_head.kernel_generate_head.in_channels == [
        32, 64, 160, 256]
    cfg = swap_backbone(load_config(
        'mmdet::dyhead/atss_r50_fpn_dyhead_1x_coco.py'), 'cvt_13',
        pretrained=None)
    assert cfg.model.neck[0].in_channels == [64, 192, 384, 384]
    assert cfg.model.neck[1].type == 'DyHead'


def test_heads_with_their_own_backbone_assumptions():
    """What the matrix found: DeepLabV3+'s low-level branch reads stage 1
    (`c1_in_channels`); OCRNet's cascade combines two heads' maps, equal
    in size only on a dilated ResNet, so both read the same stage; SSD's
    neck passes its inputs through as its first outputs (the head's
    widths follow); JPU wants a tuple."""
    cfg = swap_backbone(load_config(
        'mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb4-80k_ade20k-512x512.py'),
        'pvt_v2_b0', pretrained=None)
    assert cfg.model.decode_head.c1_in_channels == 32
    assert cfg.model.decode_head.in_channels == 256
    cfg = swap_backbone(load_config(
        'mmseg::ocrnet/ocrnet_r101-d8_4xb2-40k_cityscapes-512x1024.py'),
        'cvt_13', pretrained=None)
    assert [(h.in_index, h.in_channels) for h in cfg.model.decode_head] == [
        (3, 384), (3, 384)]
    cfg = swap_backbone(load_config('mmdet::ssd/ssd300_coco.py'),
                        'pvt_v2_b0', pretrained=None)
    assert tuple(cfg.model.backbone.out_indices) == (1, 2)
    assert tuple(cfg.model.neck.in_channels) == (64, 160)
    assert tuple(cfg.model.neck.out_channels[:2]) == (64, 160)
    assert tuple(cfg.model.bbox_head.in_channels) == tuple(
        cfg.model.neck.out_channels)
    cfg = swap_backbone(load_config(
        'mmseg::fastfcn/fastfcn_r50-d32_jpu_psp_4xb4-80k_ade20k-512x512.py'),
        'pvt_v2_b0', pretrained=None)
    assert cfg.model.neck.in_channels == (64, 160, 256)
