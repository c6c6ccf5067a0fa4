"""The backbone contract: variants, outputs, sizes, training switches, errors,
and the MMPretrain classification path."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath

import pvt_mm
from helpers import PYRAMID_CVT, PYRAMID_V2
from pvt_mm import CvT, PVTv1, PVTv2
from pvt_mm.models.layers import linear_drop_path
from pvt_mm.models.layers import QuickGELU

# Full pyramids with one stage two blocks deep (drop-path, freezing).
DEEP_V2 = dict(PYRAMID_V2, depths=(1, 2, 1, 1))
DEEP_CVT = dict(PYRAMID_CVT, depths=(1, 1, 2))
# One small model per family (and the linear-SRA variant).
SMALL = {
    'PVTv1': lambda **kw: PVTv1(arch=DEEP_V2, **kw),
    'PVTv2': lambda **kw: PVTv2(arch=DEEP_V2, **kw),
    'PVTv2-li': lambda **kw: PVTv2(arch=dict(DEEP_V2, linear=True), **kw),
    'CvT': lambda **kw: CvT(arch=DEEP_CVT, **kw),
}
FAMILIES = pytest.mark.parametrize('name', list(SMALL))


def expected_sizes(name, side):
    """Independent size arithmetic of each family's patch embeddings."""
    if name == 'PVTv1':                   # k = s, no padding
        steps = [(4, 4, 0), (2, 2, 0), (2, 2, 0), (2, 2, 0)]
    elif name == 'CvT':
        steps = [(7, 4, 2), (3, 2, 1), (3, 2, 1)]
    else:
        steps = [(7, 4, 3), (3, 2, 1), (3, 2, 1), (3, 2, 1)]
    sizes = []
    for k, s, p in steps:
        side = (side + 2 * p - k) // s + 1
        sizes.append(side)
    return sizes


# ------------------------------------------------------------ variants

# Paper parameter counts (millions) of the classification models, with the
# number of decimals the paper gives: a count must be within 1 %, or within
# the paper's rounding (CvT-21 has 31.6M; the paper prints "32M").
PAPER_PARAMS = [
    (PVTv2, 'b0', 3.7, 1), (PVTv2, 'b1', 14.0, 1), (PVTv2, 'b2_li', 22.6, 1),
    (PVTv2, 'b2', 25.4, 1), (PVTv2, 'b3', 45.2, 1), (PVTv2, 'b4', 62.6, 1),
    (PVTv2, 'b5', 82.0, 1),
    (PVTv1, 'tiny', 13.2, 1), (PVTv1, 'small', 24.5, 1),
    (PVTv1, 'medium', 44.2, 1), (PVTv1, 'large', 61.4, 1),
    (CvT, '13', 20, 0), (CvT, '21', 32, 0), (CvT, 'w24', 277, 0),
]


@pytest.mark.parametrize('cls,arch,paper,decimals', PAPER_PARAMS,
                         ids=[f'{c.__name__}-{a}' for c, a, _, _ in PAPER_PARAMS])
def test_parameter_counts_match_the_papers(cls, arch, paper, decimals):
    out_type = 'avg_featmap' if cls is PVTv2 else 'cls_token'
    with torch.device('meta'):            # no memory, no init: counts only
        model = cls(arch=arch, out_type=out_type)
    dims = model.out_channels[-1]
    count = sum(p.numel() for p in model.parameters()) + dims * 1000 + 1000
    tolerance = max(0.01 * paper, 0.5 * 10 ** -decimals)
    assert abs(count / 1e6 - paper) <= tolerance, count


@pytest.mark.parametrize('cls', [PVTv1, PVTv2, CvT])
def test_unknown_arch_lists_valid_ones(cls):
    with pytest.raises(ValueError) as e:
        cls(arch='b9')
    for name in cls.arch_settings:
        assert repr(name) in str(e.value)


def test_arch_aliases_and_dicts():
    with torch.device('meta'):
        assert PVTv2(arch='B2-Li').linear
        assert PVTv1(arch='Tiny').out_channels == [64, 128, 320, 512]
    with pytest.raises(ValueError, match=r"missing \['sr_ratios'\]"):
        PVTv2(arch={k: v for k, v in DEEP_V2.items() if k != 'sr_ratios'})
    with pytest.raises(ValueError, match=r"unknown keys \['window'\]"):
        PVTv2(arch=dict(DEEP_V2, window=7))
    with pytest.raises(ValueError, match='differ in length'):
        PVTv2(arch=dict(DEEP_V2, depths=(1, 1, 1)))
    with pytest.raises(TypeError, match='str or dict'):
        PVTv2(arch=2)


def test_registered_names():
    for name in ('PVTv1', 'PVTv2', 'CvT'):
        assert pvt_mm.MODELS.get(name) is getattr(pvt_mm, name)


def test_official_numerics_defaults():
    """LayerNorm eps 1e-6 in blocks/stage norms, 1e-5 in patch-embed and SR
    norms (PVT); CvT: eps 1e-5, QuickGELU, scale = width ** -0.5."""
    v2 = PVTv2(arch=DEEP_V2)
    stage = v2.stages[0]
    assert stage.patch_embed.norm.eps == 1e-5
    assert stage.blocks[0].attn.norm.eps == 1e-5
    assert stage.blocks[0].norm1.eps == stage.blocks[0].norm2.eps == 1e-6
    assert stage.norm.eps == 1e-6
    v1 = PVTv1(arch=DEEP_V2, out_type='cls_token')
    assert v1.stages[0].patch_embed.norm.eps == 1e-5
    assert v1.stages[0].blocks[0].attn.norm.eps == 1e-5
    assert v1.stages[3].blocks[0].norm1.eps == v1.norm.eps == 1e-6
    assert v1.stages[3].pos_embed.shape[1] == 7 * 7
    assert v1.stages[3].cls_pos_embed.shape == (1, 1, 64)
    cvt = CvT(arch=DEEP_CVT)
    block = cvt.stages[2].blocks[0]
    assert {m.eps for m in cvt.modules() if isinstance(m, nn.LayerNorm)} == {1e-5}
    assert isinstance(block.mlp.act, QuickGELU)
    assert block.attn.scale == 48 ** -0.5
    x = torch.randn(100)
    assert torch.allclose(QuickGELU()(x), x * torch.sigmoid(1.702 * x))


# ------------------------------------------------------------ outputs

@FAMILIES
@pytest.mark.parametrize('hw', [(33, 33), (225, 317), (64, 64)])
def test_any_input_size(name, hw):
    model = SMALL[name]().eval()
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        outs = model(x)
    assert len(outs) == len(model.out_channels) == len(model.out_strides)
    hs, ws = expected_sizes(name, hw[0]), expected_sizes(name, hw[1])
    for i, out in enumerate(outs):
        assert out.shape == (2, model.out_channels[i], hs[i], ws[i])
        assert torch.isfinite(out).all()
    assert model.out_strides == ([4, 8, 16] if name == 'CvT'
                                 else [4, 8, 16, 32])


@FAMILIES
def test_batch_items_are_independent(name):
    model = SMALL[name]().eval()
    x = torch.randn(3, 3, 40, 56)
    with torch.no_grad():
        full = model(x)
        single = model(x[1:2])
    for a, b in zip(full, single):
        assert torch.allclose(a[1:2], b, atol=1e-5)


def test_large_detection_input_b0():
    model = PVTv2(arch='b0', out_indices=(3, )).eval()
    with torch.no_grad():
        out, = model(torch.randn(1, 3, 800, 1333))
    assert out.shape == (1, 256, 25, 42)


def test_out_indices_select_and_sort():
    model = PVTv2(arch=DEEP_V2, out_indices=(3, 1, -4)).eval()
    assert model.out_indices == (0, 1, 3)
    assert model.out_channels == [16, 32, 64]
    assert model.out_strides == [4, 8, 32]
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [16, 32, 64]
    assert PVTv2(arch=DEEP_V2, out_indices=2).out_indices == (2, )
    # Default: every stage densely, the last one for classification.
    assert PVTv2(arch=DEEP_V2).out_indices == (0, 1, 2, 3)
    assert PVTv2(arch=DEEP_V2, out_type='avg_featmap').out_indices == (3, )
    assert CvT(arch=DEEP_CVT, out_type='cls_token').out_indices == (2, )


def test_outputs_are_nchw_and_usable_by_convs():
    model = PVTv2(arch=DEEP_V2).eval()
    outs = model(torch.randn(1, 3, 64, 64))
    conv = nn.Conv2d(16, 4, 1)
    assert conv(outs[0]).shape == (1, 4, 16, 16)
    # contiguous NCHW like ResNet's: heads `.view` what convs make of them
    assert all(o.is_contiguous() for o in outs)
    assert conv(outs[0]).is_contiguous()
    assert outs[0].view(1, 16, -1).shape == (1, 16, 256)


@pytest.mark.parametrize('name', ['pvtv2', 'cvt'])
def test_outputs_are_contiguous_for_mmcv_ops(name):
    """mmcv ops read raw NCHW memory whatever the strides: mmcv 2.1's
    RoIAlign on a channels-last map returns other features (Mask R-CNN's RoI
    heads saw scrambled FPN maps before the outputs were made contiguous)."""
    from mmcv.ops import RoIAlign
    model = (PVTv2(arch=PYRAMID_V2) if name == 'pvtv2' else
             CvT(arch=PYRAMID_CVT, extra_downsample=True)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 96))
    assert all(o.is_contiguous() for o in outs)
    fpn_like = nn.Conv2d(16, 8, 1)(outs[0])  # convs keep the input's layout
    rois = torch.tensor([[0, 2., 3., 20., 14.]])
    op = RoIAlign((4, 4), 1.0, 2, aligned=True)
    assert torch.equal(op(fpn_like, rois), op(fpn_like.contiguous(), rois))


def test_cvt_extra_downsample_stride_32():
    model = CvT(arch=DEEP_CVT, extra_downsample=True,
                out_indices=(0, 1, 2, 3)).eval()
    assert model.out_strides == [4, 8, 16, 32]
    assert model.out_channels == [16, 32, 48, 48]
    outs = model(torch.randn(1, 3, 97, 128))
    assert [tuple(o.shape[2:]) for o in outs] == [(24, 32), (12, 16), (6, 8),
                                                  (3, 4)]
    assert sorted(model.out_norms) == ['0', '1', '2', '3']
    assert CvT(arch=DEEP_CVT, extra_downsample=True).out_indices == (0, 1, 2, 3)
    with pytest.raises(ValueError, match=r'out_indices .*out of range.*0\.\.2'):
        CvT(arch=DEEP_CVT, out_indices=(0, 1, 2, 3))


def test_cvt_out_norms_normalise_each_map():
    with_norms = CvT(arch=DEEP_CVT).eval()
    plain = CvT(arch=DEEP_CVT, out_norms=False).eval()
    plain.load_state_dict(with_norms.state_dict(), strict=False)
    with torch.no_grad():
        for i, norm in with_norms.out_norms.items():
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-1, 1)
        x = torch.randn(1, 3, 64, 64)
        for i, (a, b) in enumerate(zip(with_norms(x), plain(x))):
            norm = with_norms.out_norms[str(i)]
            expected = norm(b.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            assert torch.allclose(a, expected, atol=1e-5)


def test_pvt_v1_pos_embed_resized_to_the_input():
    model = PVTv1(arch=DEEP_V2, pretrain_img_size=64).eval()
    stage = model.stages[0]
    assert stage.pos_shape == (16, 16)
    assert stage.resized_pos_embed((16, 16)) is stage.pos_embed
    resized = stage.resized_pos_embed((8, 12))
    grid = stage.pos_embed.reshape(1, 16, 16, -1).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(8, 12), mode='bilinear',
                             align_corners=False)
    assert torch.allclose(resized, expected.flatten(2).transpose(1, 2))


# ------------------------------------------------------------ input checks

@FAMILIES
def test_too_small_input_is_a_clear_error(name):
    model = SMALL[name]()
    m = model.min_input_size()
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, m, m))
    with pytest.raises(ValueError, match=rf'{m - 1}x{m} pixels is too small'
                                         rf'.*at least {m}x{m}'):
        model(torch.randn(1, 3, m - 1, m))


def test_min_input_sizes():
    assert PVTv2(arch=DEEP_V2).min_input_size() == 29      # 8x8 SR at 1/4
    assert PVTv2(arch=dict(DEEP_V2, linear=True)).min_input_size() == 1
    assert PVTv1(arch=DEEP_V2).min_input_size() == 32


@FAMILIES
def test_wrong_channels_or_rank_is_a_clear_error(name):
    model = SMALL[name]()
    with pytest.raises(ValueError, match=r'in_channels=3 but the input has 1 '
                                         r'channels.*set in_channels=1'):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match=r'\(B, C, H, W\)'):
        model(torch.randn(3, 64, 64))


@FAMILIES
def test_other_in_channels(name):
    model = SMALL[name](in_channels=1).eval()
    outs = model(torch.randn(1, 1, 64, 64))
    assert outs[0].shape[1] == model.out_channels[0]


# ------------------------------------------------------------ arguments

@pytest.mark.parametrize('cls', [PVTv1, PVTv2, CvT])
def test_resnet_kwargs_are_rejected_by_name(cls):
    with pytest.raises(TypeError) as e:
        cls(depth=50, style='pytorch')
    msg = str(e.value)
    assert 'depth' in msg and 'style' in msg and 'arch' in msg
    with pytest.raises(TypeError, match='pretrained.*init_cfg'):
        cls(pretrained='x.pth')


def test_segmentor_injected_pretrained_names_model_pretrained(tmp_path):
    """MMSegmentation's EncoderDecoder hands its ``model.pretrained`` (a
    ResNet checkpoint in the UPerNet base) to whatever backbone is there:
    the error says where it came from and which key to clear; with
    ``model.pretrained=None`` the same config builds."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS as SEG_MODELS
    user_cfg = tmp_path / 'upernet_pvt.py'
    user_cfg.write_text("_base_ = ['mmseg::upernet/"
                        "upernet_r50_4xb4-80k_ade20k-512x512.py']\n")
    cfg = Config.fromfile(str(user_cfg))
    init_default_scope('mmseg')
    cfg.model.backbone = dict(type='pvt_mm.PVTv2', arch='b0')
    cfg.model.decode_head.in_channels = [32, 64, 160, 256]
    cfg.model.auxiliary_head.in_channels = 160
    cfg.model.data_preprocessor = None
    for head in (cfg.model.decode_head, cfg.model.auxiliary_head):
        head.norm_cfg = dict(type='BN', requires_grad=True)  # no SyncBN
    assert cfg.model.pretrained  # the base config's ResNet weights
    with pytest.raises(TypeError, match=r'model\.pretrained=None'):
        SEG_MODELS.build(copy.deepcopy(cfg.model))  # build() edits it
    cfg.model.pretrained = None
    model = SEG_MODELS.build(cfg.model)
    assert type(model.backbone).__name__ == 'PVTv2'


@FAMILIES
def test_index_arguments_out_of_range(name):
    with pytest.raises(ValueError, match='out_indices'):
        SMALL[name](out_indices=(0, 7))
    with pytest.raises(ValueError, match='out_indices'):
        SMALL[name](out_indices=())
    n = 3 if name == 'CvT' else 4
    with pytest.raises(ValueError, match=rf'frozen_stages={n} out of range'):
        SMALL[name](frozen_stages=n)
    with pytest.raises(ValueError, match='frozen_stages=-2'):
        SMALL[name](frozen_stages=-2)


def test_out_type_errors():
    with pytest.raises(ValueError, match="avg_featmap"):
        PVTv2(arch=DEEP_V2, out_type='cls_token')
    with pytest.raises(ValueError, match='out_type must be one of'):
        PVTv2(arch=DEEP_V2, out_type='logits')
    with pytest.raises(ValueError, match=r'out_indices=\(3,\)'):
        PVTv2(arch=DEEP_V2, out_type='avg_featmap', out_indices=(2, ))
    with pytest.raises(ValueError, match='with_cls_token'):
        PVTv1(arch=DEEP_V2, out_type='cls_token', with_cls_token=False)
    with pytest.raises(ValueError, match='extra_downsample'):
        CvT(arch=DEEP_CVT, out_type='cls_token', extra_downsample=True)


# ------------------------------------------------------------ training

@FAMILIES
def test_frozen_stages(name):
    model = SMALL[name](frozen_stages=1, drop_path_rate=0.)
    model.train()
    for i, stage in enumerate(model.stages):
        frozen = i <= 1
        assert all(p.requires_grad != frozen for p in stage.parameters())
        assert all(m.training != frozen for m in stage.modules())
    sum(o.sum() for o in model(torch.randn(1, 3, 64, 64))).backward()
    for i, stage in enumerate(model.stages):
        grads = [p.grad for p in stage.parameters()]
        if i <= 1:
            assert all(g is None for g in grads)
        else:
            assert all(g is not None for g in grads)
    model.train()                         # stays frozen after train()
    assert not model.stages[1].training
    assert not any(p.requires_grad for p in model.stages[0].parameters())


def test_frozen_stage_batchnorm_statistics_do_not_move():
    model = CvT(arch=DEEP_CVT, frozen_stages=0).train()
    bn = model.stages[0].blocks[0].attn.conv_proj_k.bn
    live = model.stages[1].blocks[0].attn.conv_proj_k.bn
    before, live_before = bn.running_mean.clone(), live.running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    assert torch.equal(bn.running_mean, before)
    assert not torch.equal(live.running_mean, live_before)


def test_norm_eval_keeps_cvt_batchnorm_in_eval():
    model = CvT(arch=DEEP_CVT, norm_eval=True).train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    before = [m.running_mean.clone() for m in bns]
    model(torch.randn(2, 3, 64, 64))
    assert all(torch.equal(m.running_mean, b) for m, b in zip(bns, before))
    assert model.stages[0].blocks[0].norm1.training   # only BN is affected
    plain = CvT(arch=DEEP_CVT).train()
    assert all(m.training for m in plain.modules()
               if isinstance(m, nn.BatchNorm2d))


@FAMILIES
def test_with_cp_same_outputs_and_grads(name, monkeypatch):
    torch.manual_seed(0)
    plain = SMALL[name](drop_path_rate=0.)
    cp = SMALL[name](drop_path_rate=0., with_cp=True)
    cp.load_state_dict(plain.state_dict())
    plain.train(), cp.train()   # CvT: BN uses batch statistics
    calls = []
    real = torch.utils.checkpoint.checkpoint
    monkeypatch.setattr(torch.utils.checkpoint, 'checkpoint',
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    x = torch.randn(2, 3, 64, 64)
    outs_plain, outs_cp = plain(x), cp(x)
    assert len(calls) == sum(len(s.blocks) for s in cp.stages)
    for a, b in zip(outs_plain, outs_cp):
        assert torch.equal(a, b)
    sum((o ** 2).mean() for o in outs_plain).backward()
    sum((o ** 2).mean() for o in outs_cp).backward()
    for (k, p), q in zip(plain.named_parameters(), cp.parameters()):
        assert p.grad is not None, k
        assert torch.allclose(p.grad, q.grad, atol=1e-7, rtol=1e-5), k


def test_drop_path_linear_rule():
    assert linear_drop_path(0.3, 4) == pytest.approx([0., 0.1, 0.2, 0.3])
    assert linear_drop_path(0.3, 1) == [0.]
    model = PVTv2(arch=DEEP_V2, drop_path_rate=0.4)
    blocks = [b for s in model.stages for b in s.blocks]
    rates = [b.drop_path.drop_prob if isinstance(b.drop_path, DropPath)
             else 0. for b in blocks]
    assert rates == pytest.approx([0.4 * i / (len(blocks) - 1)
                                   for i in range(len(blocks))])
    assert isinstance(blocks[0].drop_path, nn.Identity)
    cvt = CvT(arch=DEEP_CVT, drop_path_rate=0.2)
    assert cvt.stages[2].blocks[-1].drop_path.drop_prob == pytest.approx(0.2)


def _block_rates(model):
    return [[b.drop_path.drop_prob if isinstance(b.drop_path, DropPath)
             else 0. for b in s.blocks] for s in model.stages]


def test_drop_path_per_stage_is_cvts_rule():
    # The official CvT builds stage i's blocks with
    # torch.linspace(0, DROP_PATH_RATE[i], depth_i); a list does the same.
    arch = dict(PYRAMID_CVT, depths=(2, 2, 3))
    cvt = CvT(arch=arch, drop_path_rate=[0., 0.05, 0.2])
    expected = [torch.linspace(0, r, d).tolist()
                for r, d in zip([0., 0.05, 0.2], arch['depths'])]
    assert _block_rates(cvt) == [pytest.approx(e) for e in expected]
    # negative control: the same maximum as one number rises over all
    # blocks, so the first stages are no longer drop-path free
    flat = _block_rates(CvT(arch=arch, drop_path_rate=0.2))
    assert flat[0][-1] > 0 and flat[1][0] > 0
    # PVT families take the list too (one entry per stage)
    v2 = PVTv2(arch=dict(DEEP_V2, depths=(1, 1, 1, 2)),
               drop_path_rate=[0., 0., 0., 0.3])
    assert _block_rates(v2) == [[0.], [0.], [0.], pytest.approx([0., 0.3])]


@pytest.mark.parametrize('rate, match', [
    ([0., 0.1], 'has 2 per-stage entries but the backbone has 3 stages'),
    (1.0, r'number in \[0, 1\)'),
    ([0., -0.1, 0.1], r'number in \[0, 1\)'),
    ('0.1', r'number in \[0, 1\)'),
])
def test_drop_path_rate_errors(rate, match):
    with pytest.raises(ValueError, match=match):
        CvT(arch=DEEP_CVT, drop_path_rate=rate)


def test_drop_path_is_active_in_training_only():
    model = PVTv2(arch=DEEP_V2, drop_path_rate=0.5)
    x = torch.randn(2, 3, 64, 64)
    model.train()
    torch.manual_seed(1)
    a = model(x)[3]
    torch.manual_seed(2)
    b = model(x)[3]
    assert not torch.allclose(a, b)
    model.eval()
    assert torch.equal(model(x)[3], model(x)[3])


def test_drop_path_keeps_or_drops_whole_samples_scaled():
    """pvt_mm's DropPath: per-sample Bernoulli(keep_prob) keep, kept
    samples scaled by 1 / keep_prob (mmcv's and timm's semantics)."""
    from pvt_mm.models.layers import DropPath as OurDropPath
    drop = OurDropPath(0.25)
    assert isinstance(drop, DropPath)  # still mmcv's type, same attribute
    x = torch.ones(4000, 3, 2)
    y = drop.train()(x).flatten(1)
    assert torch.equal(y, y[:, :1].expand_as(y))  # whole samples
    values = set(y[:, 0].tolist())
    assert len(values) == 2 and all(v == 0. or v == pytest.approx(1 / 0.75)
                                    for v in values)
    assert (y[:, 0] > 0).float().mean().item() == pytest.approx(0.75, abs=0.03)
    assert drop.eval()(x) is x


def test_attention_runs_through_sdpa(monkeypatch):
    calls = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(F, 'scaled_dot_product_attention',
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    for name in SMALL:
        calls.clear()
        model = SMALL[name]().eval()
        model(torch.randn(1, 3, 64, 64))
        assert len(calls) == sum(len(s.blocks) for s in model.stages), name


def test_default_init_without_checkpoint():
    model = PVTv1(arch=DEEP_V2)
    model.init_weights()
    linear = model.stages[1].blocks[0].attn.q
    assert torch.all(linear.bias == 0)
    assert 0.01 < linear.weight.std() < 0.03
    assert 0.01 < model.stages[0].pos_embed.std() < 0.03
    assert torch.all(model.stages[0].patch_embed.norm.weight == 1)


def test_init_cfg_is_passed_to_mmengine():
    model = PVTv2(arch=DEEP_V2, init_cfg=dict(type='Constant', val=0.5,
                                              layer='Linear'))
    model.init_weights()
    assert torch.all(model.stages[0].blocks[0].attn.q.weight == 0.5)


# ------------------------------------------------------------ classification

@pytest.mark.parametrize('backbone,channels', [
    (dict(type='pvt_mm.PVTv2', arch='b0', out_type='avg_featmap',
          out_indices=(3, )), 256),
    (dict(type='pvt_mm.PVTv1', arch=DEEP_V2, out_type='cls_token'), 64),
    (dict(type='pvt_mm.CvT', arch=DEEP_CVT, out_type='cls_token'), 48),
], ids=['PVTv2', 'PVTv1', 'CvT'])
def test_mmpretrain_image_classifier(backbone, channels):
    pytest.importorskip('mmpretrain')
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    from mmpretrain.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(dict(
            type='ImageClassifier', backbone=backbone,
            head=dict(type='LinearClsHead', num_classes=5,
                      in_channels=channels,
                      loss=dict(type='CrossEntropyLoss'))))
    x = torch.randn(2, 3, 64, 64)
    samples = [DataSample().set_gt_label(1), DataSample().set_gt_label(3)]
    model.train()
    losses = model(x, samples, mode='loss')
    assert losses['loss'].item() > 0
    losses['loss'].backward()
    assert model.backbone.stages[0].patch_embed.proj.weight.grad is not None
    model.eval()
    with torch.no_grad():
        preds = model(x, [DataSample(), DataSample()], mode='predict')
        feats = model.extract_feat(x)
    assert len(preds) == 2 and preds[0].pred_score.shape == (5, )
    assert torch.allclose(preds[0].pred_score.sum(), torch.tensor(1.))
    assert feats[0].shape == (2, channels)


def test_cls_token_path_uses_final_norm_on_cls_only():
    model = CvT(arch=DEEP_CVT, out_type='cls_token').eval()
    dense = CvT(arch=DEEP_CVT, with_cls_token=True, out_norms=False).eval()
    dense.load_state_dict(model.state_dict(), strict=False)
    captured = {}
    stage = dense.stages[2]
    stage.register_forward_hook(lambda m, i, o: captured.update(tokens=o[0]))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feat, = model(x)
        dense(x)
        expected = model.norm(captured['tokens'][:, 0])
    assert torch.allclose(feat, expected, atol=1e-6)


def test_avg_featmap_is_mean_of_normed_last_stage():
    model = PVTv2(arch=DEEP_V2, out_type='avg_featmap', out_indices=(3, ))
    dense = PVTv2(arch=DEEP_V2, out_indices=(3, ))
    dense.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feat, = model.eval()(x)
        fmap, = dense.eval()(x)
    assert feat.shape == (2, 64)
    assert torch.allclose(feat, fmap.mean(dim=(2, 3)), atol=1e-6)


def test_ffn_kind_per_family_and_parameter_order():
    """PVTv1 and CvT have the plain MLP, PVTv2 the depthwise-conv FFN (with
    PVTv2-Li's ReLU). The parameters keep the forward order fc1, dwconv,
    fc2: an optimizer's state is saved by parameter index, so a resumed
    run depends on it."""
    from pvt_mm.models.layers import ConvFFN, Mlp
    mlps = {name: make().stages[0].blocks[0].mlp
            for name, make in SMALL.items()}
    assert type(mlps['PVTv1']) is Mlp and type(mlps['CvT']) is Mlp
    assert mlps['PVTv1'].dwconv is None and mlps['CvT'].relu is None
    assert type(mlps['PVTv2']) is ConvFFN and mlps['PVTv2'].relu is None
    assert type(mlps['PVTv2-li'].relu) is torch.nn.ReLU
    assert [n for n, _ in mlps['PVTv2'].named_parameters()] == [
        'fc1.weight', 'fc1.bias', 'dwconv.weight', 'dwconv.bias',
        'fc2.weight', 'fc2.bias']


def test_stage_specs_read_as_the_papers_tables():
    """Each family's stages as data (layers.StageSpec): what the papers'
    architecture sections say, and a clear error for an unknown kind."""
    from pvt_mm.models import cvt, pvt_v1, pvt_v2
    from pvt_mm.models.layers import StageSpec
    b2 = pvt_v2.stage_specs(pvt_v2.ARCH_SETTINGS['b2'])
    assert [s.patch for s in b2] == [(7, 4, 3)] + [(3, 2, 1)] * 3
    assert {(s.attention, s.ffn, s.out_norm) for s in b2} == {
        ('sra', 'conv', True)}
    assert [s.attn_args['sr_ratio'] for s in b2] == [8, 4, 2, 1]
    li = pvt_v2.stage_specs(pvt_v2.ARCH_SETTINGS['b2_li'])
    assert {(s.attention, s.ffn) for s in li} == {('linear_sra', 'conv_relu')}
    v1 = pvt_v1.stage_specs(pvt_v1.ARCH_SETTINGS['small'], 224, True)
    assert [s.patch for s in v1] == [(4, 4, 0)] + [(2, 2, 0)] * 3
    assert [s.pos_grid for s in v1] == [56, 28, 14, 7]
    assert [s.cls_token for s in v1] == [False, False, False, True]
    assert {(s.attention, s.ffn) for s in v1} == {('sra', 'mlp')}
    c13 = cvt.stage_specs(cvt.ARCH_SETTINGS['13'], False)
    assert [s.patch for s in c13] == [(7, 4, 2), (3, 2, 1), (3, 2, 1)]
    assert {(s.attention, s.ffn) for s in c13} == {('conv_proj', 'mlp')}
    with pytest.raises(ValueError, match="unknown attention 'window'.*sra"):
        StageSpec(dims=8, depth=1, patch=(3, 2, 1), attention='window',
                  num_heads=1, ffn='mlp', mlp_ratio=4)
    with pytest.raises(ValueError, match='unknown ffn'):
        StageSpec(dims=8, depth=1, patch=(3, 2, 1), attention='sra',
                  num_heads=1, ffn='moe', mlp_ratio=4)


@pytest.mark.parametrize('name', list(SMALL))
def test_output_shape_is_what_forward_returns(name):
    """``output_shape()`` (the contract as data, as detectron2's
    ``output_shape``): the channels and strides of the maps forward
    really returns, with an extra output and a subset of outputs too."""
    from pvt_mm.models import FeatureSpec
    kwargs = [dict(), dict(out_indices=(1, 3) if name != 'CvT' else (0, 2))]
    if name == 'CvT':
        kwargs.append(dict(extra_downsample=True))
    x = torch.randn(1, 3, 128, 96)
    for kw in kwargs:
        model = SMALL[name](**kw).eval()
        with torch.no_grad():
            outs = model(x)
        assert model.output_shape() == tuple(
            FeatureSpec(o.shape[1], 128 // o.shape[2]) for o in outs)
        assert all(128 // o.shape[2] == 96 // o.shape[3] for o in outs)


def test_input_checks_hold_after_a_size_is_cached():
    """The input checks (pvt_mm.models.checks.check_input) skip only what
    they already checked: a known size with the wrong channels, or a
    batch without its batch dimension, is still refused."""
    model = SMALL['PVTv2']().eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
        with pytest.raises(ValueError, match='in_channels=3 but the input '
                                             'has 4 channels'):
            model(torch.randn(1, 4, 64, 64))
        with pytest.raises(ValueError, match=r'expects a \(B, C, H, W\)'):
            model(torch.randn(3, 64, 64))
        with pytest.raises(ValueError, match='too small'):
            model(torch.randn(1, 3, 8, 64))
