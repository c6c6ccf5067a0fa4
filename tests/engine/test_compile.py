"""``tools/train.py --compile``: pvt_mm.CompileHook and pvt_mm.SizeBuckets
(pvt_mm/engine/compile.py).

The default suite compiles with the ``aot_eager`` backend (dynamo's graph
capture and AOTAutograd's forward / backward split, as inductor gets
them, without inductor's minutes of code generation): one graph per
module and size, no graph break, the same losses as eager, validation
eager, state-dict keys unchanged. Inductor itself trains in the slow
suite (test_compile_inductor_trains_like_eager below).
"""
import copy
import types

import pytest
import torch
from mmengine.logging import MMLogger
from torch._dynamo.utils import counters

from helpers import load_tool, tiny_dense_config
from pvt_mm.engine.runner import use_compile
from pvt_mm.engine.compile import CompileHook, SizeBuckets

RETINANET = 'retinanet_pvt_v2_b0_demo.py'


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()
    torch.compiler.set_stance('default')


def build(name, backbone='pvtv2', buckets=None):
    from mmdet.registry import MODELS as DET_MODELS
    from mmengine.registry import init_default_scope
    cfg = tiny_dense_config(name, backbone)
    init_default_scope(cfg.default_scope)
    if buckets is not None:
        cfg.model.data_preprocessor.batch_augments = [
            dict(type='pvt_mm.SizeBuckets', step=buckets)]
    if cfg.default_scope == 'mmseg':
        from mmseg.registry import MODELS
        cfg.model.data_preprocessor.size = (64, 64)  # the recipe's crop
    else:
        MODELS = DET_MODELS
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model.train()


def det_batch(h, w, n=2, masks=False):
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    gen = torch.Generator().manual_seed(h * 1000 + w)
    samples = []
    for _ in range(n):
        s = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                        scale_factor=(1., 1.)))
        s.gt_instances = InstanceData(
            bboxes=torch.tensor([[4., 4., w / 2, h / 2]]),
            labels=torch.tensor([1]))
        if masks:
            m = torch.zeros(1, h, w, dtype=torch.uint8)
            m[:, 4:h // 2, 4:w // 2] = 1
            s.gt_instances.masks = BitmapMasks(m.numpy(), h, w)
        samples.append(s)
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8,
                            generator=gen) for _ in range(n)]
    return dict(inputs=images, data_samples=samples)


def seg_batch(h, w, n=2):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    gen = torch.Generator().manual_seed(h * 1000 + w)
    samples = []
    for _ in range(n):
        s = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, 3, (1, h, w),
                                                    generator=gen))
        samples.append(s)
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8,
                            generator=gen) for _ in range(n)]
    return dict(inputs=images, data_samples=samples)


def fake_runner(model):
    return types.SimpleNamespace(model=model,
                                 logger=MMLogger.get_current_instance())


def graphs():
    return int(counters['stats']['unique_graphs'])


def train_losses(model, batch):
    """Losses of one training forward (no optimizer step, so that a model
    can be compared with its copy on the same weights). Seeded: Mask
    R-CNN samples its RoIs at random."""
    from mmengine.runner import set_random_seed
    set_random_seed(0)
    data = model.data_preprocessor(copy.deepcopy(batch), True)
    losses = model(**data, mode='loss')
    total = sum(v.sum() for k, v in losses.items() if 'loss' in k
                for v in (v if isinstance(v, list) else [v]))
    total.backward()
    return total.detach()


# ---------------------------------------------------------------- buckets

def test_size_buckets_pad_images_metas_and_masks():
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    x = torch.randn(2, 3, 96, 160)
    samples = []
    for _ in range(2):
        s = DetDataSample(metainfo=dict(img_shape=(90, 150),
                                        pad_shape=(96, 160),
                                        batch_input_shape=(96, 160)))
        s.gt_instances = InstanceData(
            masks=BitmapMasks(torch.ones(1, 96, 160).numpy(), 96, 160))
        samples.append(s)
    out, samples = SizeBuckets(step=64, pad_mask=True)(x, samples)
    assert out.shape[-2:] == (128, 192)
    assert torch.equal(out[..., :96, :160], x)
    assert out[..., 96:, :].abs().sum() == 0
    assert out[..., :, 160:].abs().sum() == 0
    for s in samples:
        assert s.pad_shape == s.batch_input_shape == (128, 192)
        assert s.img_shape == (90, 150)  # the image itself did not change
        m = s.gt_instances.masks
        assert (m.height, m.width) == (128, 192)
        assert m.masks[:, :96, :160].all() and not m.masks[:, 96:].any()
    # sizes already on the grid stay as they are
    y = torch.randn(1, 3, 128, 64)
    assert SizeBuckets(step=64)(y, None)[0] is y
    with pytest.raises(ValueError, match='step must be a positive'):
        SizeBuckets(step=0)


# ---------------------------------------------------------------- the hook

def test_hook_compiles_in_place_one_graph_per_bucket_and_validates_eagerly():
    model = build(RETINANET, buckets=64)
    reference = copy.deepcopy(model)
    keys = list(model.state_dict())
    hook = CompileHook(backend='aot_eager')
    hook.before_train(fake_runner(model))
    assert list(model.state_dict()) == keys  # checkpoints unchanged
    assert model.backbone._compiled_call_impl is not None
    assert model.neck._compiled_call_impl is not None

    # 128x140 and 128x176 pad to different multiples of 32 (128x160,
    # 128x192) but to one bucket (128x192); 200x128 to another (256x128)
    before = graphs()
    for h, w in ((128, 140), (128, 176), (200, 128)):
        batch = det_batch(h, w)
        loss = train_losses(model, batch)
        want = train_losses(reference, batch)
        torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-6)
    assert graphs() - before == 2 * 2  # backbone and neck, 2 buckets

    # validation runs eagerly: a new size compiles nothing
    hook.before_val_epoch(fake_runner(model))
    model.eval()
    with torch.no_grad():
        model.test_step(model.data_preprocessor(det_batch(96, 96, n=1)))
    assert graphs() - before == 4
    hook.after_val_epoch(fake_runner(model))
    model.train()
    train_losses(model, det_batch(320, 64))
    assert graphs() - before == 6  # compiling again after validation


def test_without_buckets_every_padded_size_compiles():
    """Negative control of the bucket count above."""
    model = build(RETINANET)
    CompileHook(backend='aot_eager').before_train(fake_runner(model))
    before = graphs()
    for h, w in ((128, 140), (128, 176), (200, 128)):
        train_losses(model, det_batch(h, w))
    assert graphs() - before == 3 * 2


@pytest.mark.parametrize('name', ['mask_rcnn_pvt_v2_b0_demo.py',
                                  'sem_fpn_pvt_v2_b0_demo.py'])
def test_hook_on_mask_rcnn_and_semantic_fpn(name):
    """No graph break (fullgraph) in backbone and neck of the other two
    recipe families, and the same losses as eager."""
    model = build(name)
    reference = copy.deepcopy(model)
    CompileHook(backend='aot_eager').before_train(fake_runner(model))
    batch = (seg_batch(64, 64) if name.startswith('sem_fpn')
             else det_batch(96, 128, masks=True))
    before = graphs()
    torch.testing.assert_close(train_losses(model, batch),
                               train_losses(reference, batch),
                               rtol=1e-5, atol=1e-6)
    assert graphs() - before == 2


def test_graph_break_is_an_error_not_a_slowdown():
    class Breaks(torch.nn.Module):
        def forward(self, x):
            if x.sum().item() > 0:  # data-dependent Python branch
                return x + 1
            return x - 1

    model = torch.nn.Module()
    model.backbone = Breaks()
    CompileHook(modules='backbone', backend='eager').before_train(
        fake_runner(model))
    with pytest.raises(Exception, match='(?i)graph break|item|fullgraph'):
        model.backbone(torch.ones(2))


def test_hook_names_a_missing_module():
    model = torch.nn.Module()
    model.backbone = torch.nn.Identity()
    with pytest.raises(ValueError, match="no module 'neck'.*backbone"):
        CompileHook().before_train(fake_runner(model))
    with pytest.raises(ValueError, match='mode or options'):
        CompileHook(mode='max-autotune', options={'a': 1})


# ---------------------------------------------------------------- train.py

@pytest.mark.parametrize('config,pad_mask', [
    ('configs/retinanet_pvt_v2_b2_coco.py', False),
    ('configs/mask_rcnn_pvt_v2_b2_coco.py', True),
    ('configs/sem_fpn_pvt_v2_b2_ade20k_40k.py', None)])
def test_train_compile_flag(config, pad_mask):
    train = load_tool('train')
    args = train.parse_args([config, '--compile', '--compile-bucket', '128'])
    from pvt_mm.engine.runner import config_from_args
    cfg = config_from_args(config, args)
    train.apply_train_args(cfg, args)
    assert cfg.custom_hooks[-1] == dict(type='pvt_mm.CompileHook')
    augments = cfg.model.data_preprocessor.get('batch_augments') or []
    if pad_mask is None:
        # a segmentation recipe trains on fixed crops: no buckets needed
        assert augments == [] and cfg.model.data_preprocessor.size
    else:
        assert augments[-1]['type'] == 'pvt_mm.SizeBuckets'
        assert augments[-1]['step'] == 128
        assert augments[-1]['pad_mask'] is pad_mask


def test_train_compile_flag_errors():
    train = load_tool('train')
    from pvt_mm.engine.runner import config_from_args
    config = 'configs/retinanet_pvt_v2_b2_coco.py'

    def apply(*flags, **cfg_set):
        args = train.parse_args([config, *flags])
        cfg = config_from_args(config, args)
        cfg.merge_from_dict(cfg_set)
        train.apply_train_args(cfg, args)

    with pytest.raises(SystemExit, match='multiple of .*pad_size_divisor'):
        apply('--compile', '--compile-bucket', '48')
    with pytest.raises(SystemExit, match='needs --compile'):
        apply('--compile-bucket', '128')
    with pytest.raises(SystemExit, match='already sets compile'):
        apply('--compile', compile=True)
    cfg = config_from_args(config, train.parse_args([config]))
    use_compile(cfg)
    with pytest.raises(SystemExit, match='already has a CompileHook'):
        use_compile(cfg)


# ------------------------------------------------- inductor (slow suite)

@pytest.mark.slow
@pytest.mark.usefixtures('fresh_inductor_cache')
@pytest.mark.parametrize('name', [RETINANET, 'mask_rcnn_pvt_v2_b0_demo.py',
                                  'sem_fpn_pvt_v2_b0_demo.py'])
def test_compile_inductor_trains_like_eager(name):
    """Inductor-compiled backbone and neck (CPU): the losses and the
    backbone's gradients of eager PyTorch, at two bucketed sizes. fp32
    throughout; inductor fuses and reorders sums, so equal to rounding:
    rtol 1e-4 on the losses, gradients within 1e-4 of their largest."""
    seg = name.startswith('sem_fpn')
    model = build(name, buckets=None if seg else 64)
    reference = copy.deepcopy(model)
    CompileHook().before_train(fake_runner(model))
    sizes = [(64, 64)] if seg else [(96, 128), (128, 96)]
    for h, w in sizes:
        batch = (seg_batch(h, w) if seg
                 else det_batch(h, w, masks='mask' in name))
        for m in (model, reference):
            m.zero_grad()
        torch.testing.assert_close(train_losses(model, batch),
                                   train_losses(reference, batch),
                                   rtol=1e-4, atol=1e-6)
        for (key, p), q in zip(model.backbone.named_parameters(),
                               reference.backbone.parameters()):
            scale = q.grad.abs().max().clamp_min(1e-12)
            err = (p.grad - q.grad).abs().max() / scale
            assert err < 1e-4, (key, float(err))


@pytest.mark.slow
@pytest.mark.usefixtures('fresh_inductor_cache')
def test_train_tool_with_compile(tmp_path):
    """``tools/train.py --compile`` through MMEngine's runner: trains,
    validates (eagerly), checkpoints with the usual keys."""
    from pvt_mm.data.demo_data import make_demo_data
    data = make_demo_data(str(tmp_path / 'data'), num_train=8, num_val=4)
    train = load_tool('train')
    work_dir = str(tmp_path / 'wd')
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train.main([
            f'configs/demo/{RETINANET}', '--compile', '--work-dir', work_dir,
            '--cfg-options', f'data_root={data}/coco',
            'train_cfg.max_epochs=1', 'train_dataloader.batch_size=4',
            'val_dataloader.batch_size=4'])
    finally:
        torch.set_num_threads(threads)
    with open(f'{work_dir}/last_checkpoint') as f:
        ckpt = torch.load(f.read().strip(), map_location='cpu')
    assert not any('_orig_mod' in k for k in ckpt['state_dict'])
    assert any(k.startswith('backbone.') for k in ckpt['state_dict'])
    log = open(next(iter(sorted((tmp_path / 'wd').glob('*/*.log'))))).read()
    assert 'torch.compile (inductor, static shapes): backbone (PVTv2), ' \
        'neck (FPN)' in log
    assert 'Epoch(val)' in log  # validation ran (eagerly) after training
