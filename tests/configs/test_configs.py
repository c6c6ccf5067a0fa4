"""Every config in configs/ parses, builds its real model (necks sized from
the backbone's ``out_channels``), and runs one training step and one
inference on a tiny CPU input; configs inherit the downstream libraries'
bases; a user project outside the repo inherits ours with ``pvt_mm::``."""
import glob
import os
import os.path as osp
import subprocess
import sys
import textwrap

import pytest
import torch

from helpers import REPO_ROOT

pytestmark = pytest.mark.usefixtures('fast_config_parsing')

CONFIG_DIR = osp.join(REPO_ROOT, 'configs')
CONFIGS = sorted(
    osp.relpath(p, CONFIG_DIR)
    for p in glob.glob(osp.join(CONFIG_DIR, '**', '*.py'), recursive=True)
    if '_base_' not in p)
SIZE = 64  # tiny input side (every variant's deepest stage still fits)


@pytest.fixture(scope='module', autouse=True)
def _one_thread():
    """Tiny inputs through large models: with more torch threads than
    free cores (2-core CI, other jobs) each step is 10x+ slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load(name):
    from mmengine.config import Config
    return Config.fromfile(osp.join(CONFIG_DIR, name))


def register(scope):
    import importlib
    importlib.import_module(f'{scope}.utils').register_all_modules(
        init_default_scope=False)
    return importlib.import_module(f'{scope}.registry').MODELS


def tiny_batch(cfg, model, scope):
    """A 2-image batch in the form the config's data preprocessor takes."""
    images = [torch.randint(0, 256, (3, SIZE, SIZE), dtype=torch.uint8)
              for _ in range(2)]
    if scope == 'mmdet':
        from mmdet.testing import demo_mm_inputs
        head = getattr(model, 'bbox_head', None) or model.roi_head.bbox_head
        if isinstance(head, torch.nn.ModuleList):  # cascades
            head = head[0]
        data = demo_mm_inputs(2, [(3, SIZE, SIZE)] * 2, num_items=[2, 1],
                              num_classes=head.num_classes,
                              with_mask=hasattr(model, 'roi_head') and
                              model.roi_head.with_mask)
        data['inputs'] = images
        return data
    meta = dict(img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE),
                pad_shape=(SIZE, SIZE))
    if scope == 'mmseg':
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        samples = []
        for _ in images:
            s = SegDataSample(metainfo=meta)
            s.gt_sem_seg = PixelData(data=torch.randint(
                0, model.decode_head.num_classes, (1, SIZE, SIZE)))
            samples.append(s)
        return dict(inputs=images, data_samples=samples)
    from mmpretrain.structures import DataSample
    samples = [DataSample(metainfo=meta).set_gt_label(i) for i in range(2)]
    return dict(inputs=images, data_samples=samples)


def fewer_rois(model):
    """Fewer proposals / sampled RoIs on the tiny input: the same code in
    a fraction of the time (Cascade Mask R-CNN's 4-conv heads on 512 RoIs
    x 3 stages took ~40 s, Sparse R-CNN's 300 proposals x 6 stages ~20 s
    on one core)."""
    if 'num_proposals' in (model.get('rpn_head') or {}):  # Sparse R-CNN
        model.rpn_head.num_proposals = 20
        model.test_cfg.rcnn.max_per_img = 20
    train, test = model.get('train_cfg') or {}, model.get('test_cfg') or {}
    rcnn = train.get('rcnn')
    for stage in rcnn if isinstance(rcnn, list) else [rcnn]:
        if isinstance(stage, dict) and 'num' in (stage.get('sampler') or {}):
            stage['sampler']['num'] = 16
    for proposals in (train.get('rpn_proposal'), test.get('rpn')):
        if isinstance(proposals, dict) and 'max_per_img' in proposals:
            proposals.update(nms_pre=100, max_per_img=50)


def strip_pretrained(node):
    """No downloads in tests: drop ``init_cfg=dict(type='Pretrained')``."""
    if isinstance(node, dict):
        if isinstance(node.get('init_cfg'), dict) and \
                node['init_cfg'].get('type') == 'Pretrained':
            node['init_cfg'] = None
        for value in node.values():
            strip_pretrained(value)
    elif isinstance(node, list):
        for value in node:
            strip_pretrained(value)


def test_config_coverage():
    """The set the project promises (README / docs/model_zoo.md)."""
    dense = (['pvt_v1_' + a for a in ('tiny', 'small', 'medium', 'large')] +
             ['pvt_v2_b' + a for a in '012345'] + ['pvt_v2_b2_li',
                                                   'cvt_13', 'cvt_21'])
    expected = {f'retinanet_{b}_coco.py' for b in dense}
    expected |= {f'mask_rcnn_{b}_coco.py' for b in dense}
    expected |= {f'mask_rcnn_pvt_v2_{b}_coco_3x_ms.py'
                 for b in ('b0', 'b2', 'b2_li')}
    expected |= {f'gfl_pvt_v2_{b}_coco_{s}.py' for b in ('b2', 'b2_li')
                 for s in ('1x', '3x_ms')}
    expected |= {f'{m}_pvt_v2_{b}_coco_3x_ms.py' for b in ('b2', 'b2_li')
                 for m in ('cascade_mask_rcnn', 'atss', 'sparse_rcnn')}
    expected |= {f'{m}_pvt_v1_{a}_coco_3x_ms.py' for m in ('retinanet',
                                                           'mask_rcnn')
                 for a in ('tiny', 'small', 'medium', 'large')}
    expected |= {'detr_pvt_v1_small_coco_50e.py',
                 'retinanet_pvt_v1_small_coco_640.py'}
    expected |= {f'sem_fpn_{b}_ade20k_40k.py' for b in dense}
    expected |= {'sem_fpn_pvt_v1_large_ade20k_160k_tta.py',
                 'trans2seg_pvt_v1_small_ade20k_40k.py'}
    expected |= {f'cls_{b}_in1k.py' for b in dense + ['cvt_w24', 'cvt_13_384',
                                                   'cvt_21_384']}
    missing = expected - set(CONFIGS)
    assert not missing, sorted(missing)


@pytest.mark.parametrize('name', CONFIGS)
def test_config_builds_and_runs(name):
    cfg = load(name)
    assert cfg.custom_imports.imports[:2] == ['pvt_mm', 'pvt_mm.engine']
    hooks = {h['type'] for h in cfg.custom_hooks}
    assert {'pvt_mm.NonFiniteLossHook', 'pvt_mm.IterationSeedHook'} <= hooks
    assert cfg.default_hooks.checkpoint.type == 'pvt_mm.AtomicCheckpointHook'
    scope = cfg.default_scope
    assert scope in ('mmdet', 'mmseg', 'mmpretrain')
    MODELS = register(scope)
    from mmengine.registry import init_default_scope
    init_default_scope(scope)  # as MMEngine's runner does
    # As MMEngine's runner does: a top-level data_preprocessor fills in.
    cfg.model.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    if scope == 'mmseg':  # crop to the tiny input instead of 512x512
        cfg.model.data_preprocessor.size = (SIZE, SIZE)
    head = cfg.model.get('decode_head', {})
    if head.get('type') == 'pvt_mm.Trans2SegHead':  # built for 512x512
        head.feat_size = (SIZE // 32, SIZE // 32)
        cfg.model.data_preprocessor.test_cfg.size = (SIZE, SIZE)
        cfg.model.test_cfg.update(crop_size=(SIZE, SIZE),
                                  stride=(SIZE // 2, SIZE // 2))
    strip_pretrained(cfg.model)
    fewer_rois(cfg.model)
    model = MODELS.build(cfg.model)
    if hasattr(getattr(model, 'rpn_head', None), 'init_proposal_bboxes'):
        # Sparse R-CNN's learned proposals are only valid boxes after
        # init_weights() (as the runner calls it).
        model.rpn_head.init_weights()
    backbone = model.backbone
    assert type(backbone).__module__.startswith('pvt_mm.models')
    # Necks / heads are sized from what the backbone says it returns.
    if scope == 'mmpretrain':
        assert model.head.in_channels == backbone.out_channels[-1]
    elif not model.with_neck:  # Trans2Seg reads the backbone's maps
        head = model.decode_head
        assert list(head.in_channels) == [backbone.out_channels[i]
                                          for i in head.in_index]
        assert backbone.out_strides == [4, 8, 16, 32]
    else:
        neck_in = getattr(model.neck, 'in_channels', None) or [
            m.conv.in_channels for m in model.neck.convs]  # ChannelMapper
        assert list(neck_in) == list(backbone.out_channels)
        if type(model).__name__ == 'DETR':  # the stride-32 map only
            assert backbone.out_strides == [32]
        else:
            assert backbone.out_strides == [4, 8, 16, 32]

    data = model.data_preprocessor(tiny_batch(cfg, model, scope), True)
    model.train()
    losses = model(**data, mode='loss')
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in backbone.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)

    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(tiny_batch(cfg, model, scope), False)
        preds = model(**data, mode='predict')
    assert len(preds) == 2
    if scope == 'mmdet':
        assert preds[0].pred_instances.bboxes.shape[-1] == 4
    elif scope == 'mmseg':
        assert preds[0].pred_sem_seg.data.shape[-2:] == (SIZE, SIZE)
    else:
        assert preds[0].pred_score.shape == (model.head.num_classes, )


def test_configs_inherit_rather_than_copy():
    """Method bases inherit mmdet::/mmseg::/mmpretrain:: bases; no config
    restates what those bases define (runtime, datasets)."""
    copied = ('default_scope', 'env_cfg', 'log_processor', 'vis_backends',
              "type='CocoDataset'", "type='ADE20KDataset'", "type='CheckpointHook'")
    for path in glob.glob(osp.join(CONFIG_DIR, '**', '*.py'), recursive=True):
        text = open(path).read()
        assert not [k for k in copied if k in text], path
    for kind in ('det', 'seg', 'cls'):
        for path in glob.glob(osp.join(CONFIG_DIR, '_base_', kind, '*.py')):
            text = open(path).read()
            assert '::' in text or 'recipe_' in path or \
                "_1x.py'" in text, path


def test_paper_recipes():
    """The recipes of the issue, read back from the parsed configs."""
    r = load('retinanet_pvt_v2_b2_coco.py')
    assert r.optim_wrapper.optimizer.type == 'AdamW'
    assert (r.optim_wrapper.optimizer.lr, r.optim_wrapper.optimizer.
            weight_decay) == (1e-4, 1e-4)
    assert r.train_cfg.max_epochs == 12
    assert r.param_scheduler[1].milestones == [8, 11]
    assert r.train_dataloader.batch_size * 8 == r.auto_scale_lr.base_batch_size
    assert r.train_pipeline[2].scale == (1333, 800)
    m = load('mask_rcnn_pvt_v2_b2_coco.py')
    assert m.optim_wrapper.optimizer.lr == 2e-4
    m3 = load('mask_rcnn_pvt_v2_b2_coco_3x_ms.py')
    opt = m3.optim_wrapper
    assert (opt.optimizer.lr, opt.optimizer.weight_decay) == (1e-4, 0.05)
    assert opt.paramwise_cfg.custom_keys.norm.decay_mult == 0
    assert m3.train_cfg.max_epochs == 36
    assert m3.param_scheduler[1].milestones == [27, 33]
    assert m3.train_dataloader.dataset.pipeline[3].type == 'RandomChoice'
    s = load('sem_fpn_pvt_v2_b2_ade20k_40k.py')
    assert s.train_cfg.max_iters == 40000 and s.crop_size == (512, 512)
    assert s.param_scheduler[0].power == 0.9
    assert (s.optim_wrapper.optimizer.lr, s.optim_wrapper.optimizer.
            weight_decay) == (2e-4, 1e-4)
    assert s.train_dataloader.batch_size * 8 == s.auto_scale_lr.base_batch_size
    c = load('cls_pvt_v2_b2_in1k.py')
    assert c.train_cfg.max_epochs == 300
    assert c.param_scheduler[1].type == 'CosineAnnealingLR'
    assert c.train_dataloader.batch_size * 8 == c.auto_scale_lr.base_batch_size
    big = load('mask_rcnn_pvt_v2_b5_coco.py')
    assert big.train_dataloader.batch_size == 1
    assert big.optim_wrapper.optimizer.lr == pytest.approx(2e-4 / 1.4)
    assert big.auto_scale_lr.base_batch_size == 8
    cvt = load('retinanet_cvt_13_coco.py').model.backbone
    assert cvt.extra_downsample and tuple(cvt.out_indices) == (0, 1, 2, 3)


def test_use_in_your_project(tmp_path):
    """docs/use_in_your_project.md: a project outside the repo inherits a
    full pvt_mm config and a backbone base with ``pvt_mm::``, then builds
    and runs the model with MMDetection's registry."""
    project = tmp_path / 'my_project'
    project.mkdir()
    (project / 'my_retinanet.py').write_text(textwrap.dedent('''
        _base_ = 'pvt_mm::retinanet_pvt_v2_b0_coco.py'
        model = dict(backbone=dict(init_cfg=None, frozen_stages=0),
                     bbox_head=dict(num_classes=5))
    '''))
    (project / 'my_faster_rcnn.py').write_text(textwrap.dedent('''
        _base_ = ['mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
                  'pvt_mm::_base_/models/pvt_v2_b1.py']
        model = dict(backbone=dict(_delete_=True, **_base_.backbone),
                     neck=dict(in_channels=_base_.backbone_channels))
        model['backbone']['init_cfg'] = None
    '''))
    code = textwrap.dedent('''
        import torch
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        from mmdet.registry import MODELS
        for name in ('my_retinanet.py', 'my_faster_rcnn.py'):
            cfg = Config.fromfile(name)
            init_default_scope(cfg.get('default_scope', 'mmdet'))
            model = MODELS.build(cfg.model)
            feats = model.extract_feat(torch.zeros(1, 3, 64, 64))
            print(name, type(model).__name__, type(model.backbone).__name__,
                  model.backbone.out_channels, len(feats))
    ''')
    res = subprocess.run([sys.executable, '-c', code], cwd=str(project),
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith('my_')]
    assert lines == [
        'my_retinanet.py RetinaNet PVTv2 [32, 64, 160, 256] 5',
        'my_faster_rcnn.py FasterRCNN PVTv2 [64, 128, 320, 512] 5']
