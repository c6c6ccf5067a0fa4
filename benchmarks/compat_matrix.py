"""Which MMDetection / MMSegmentation architectures take pvt_mm backbones:
a measured table.

    python benchmarks/compat_matrix.py                  # all cells
    python benchmarks/compat_matrix.py --folders retinanet upernet
    python benchmarks/compat_matrix.py --backbones pvt_v2_b0
    python benchmarks/compat_matrix.py --report-only    # table from cache

Walks the config folders that ship with MMDetection 3.3 and MMSegmentation
1.2 (``<package>/.mim/configs``). Each folder is either an architecture
with an ImageNet backbone, run with one representative config (the simplest
ResNet-50 one, or the one named in ``REPRESENTATIVE``), or listed in
``NOT_APPLICABLE`` with the reason. For each representative and backbone,
a process of its own (a *cell*, forked after the libraries are imported
once, or with ``--subprocess`` a new interpreter; ``--timeout`` seconds):

1. parses the library's own config and calls :func:`pvt_mm.swap_backbone`
   (``pretrained=None``: from scratch), the documented one-liner;
2. adapts the run, not the model, to a CPU and the generated demo data
   (:func:`adapt_to_demo`: SyncBN -> BN, 3 / 4 classes, 64-pixel images,
   a few iterations, no checkpoints, no recipe hooks, fp32);
3. trains ``--iters`` iterations with the library's own ``Runner`` and
   evaluates on the demo validation split with the config's own metric.

A cell passes when training ran with finite losses and the evaluation ran
over the validation split (its metrics are recorded; a detector a few
iterations from scratch may have nothing left to score). Results are cached per cell under ``--cache``, keyed by the
backbones' code and ``CELL_VERSION``; a changed key reruns the cell,
``--force`` reruns everything. The tool writes ``--json`` and
replaces the table between the markers in ``--doc``.
"""
import argparse
import glob
import hashlib
import json
import math
import os
import os.path as osp
import sys
import time

from harness.measure import replace_doc_block
from harness.workers import print_result, run_worker_process

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
LIBS = ('mmdet', 'mmseg')
BACKBONES = ('pvt_v2_b0', 'cvt_13', 'pvt_v1_tiny')
#: The backbones a folder must pass with to count as working.
REQUIRED = ('pvt_v2_b0', 'cvt_13')
#: The control run of a failing cell: the same adapted config with its own
#: backbone (e.g. ResNet-50). Failing too, the failure is the library's
#: (or this CPU's), not the swap's.
CONTROL = 'original'

BACKBONE_TITLES = {'pvt_v2_b0': 'PVTv2-B0', 'cvt_13': 'CvT-13',
                   'pvt_v1_tiny': 'PVTv1-Tiny'}
MARK_BEGIN = '<!-- compat-matrix:begin (benchmarks/compat_matrix.py) -->'
MARK_END = '<!-- compat-matrix:end -->'

# Why a folder is not an architecture that takes an ImageNet backbone's
# feature pyramid (or cannot run on generated data at all). Grouped by kind.
_NA = {
    'not a model': {
        'mmdet': ['_base_', 'common', 'dsdl', 'legacy_1.x'],
        'mmseg': ['_base_', 'dsdl'],
    },
    'a dataset for an architecture covered by its own folder': {
        'mmdet': ['cityscapes', 'deepfashion', 'lvis', 'objects365',
                  'openimages', 'pascal_voc', 'wider_face', 'v3det'],
    },
    'another backbone (the folder is about the backbone, not the head)': {
        'mmdet': ['convnext', 'efficientnet', 'hrnet', 'pvt', 'regnet',
                  'res2net', 'resnest', 'resnet_strikes_back', 'swin',
                  'timm_example', 'selfsup_pretrain'],
        'mmseg': ['beit', 'convnext', 'hrnet', 'mae', 'mobilenet_v2',
                  'mobilenet_v3', 'poolformer', 'resnest', 'swin', 'twins',
                  'vit'],
    },
    'a change inside ResNet\'s stages (conv / norm plugins), not a head': {
        'mmdet': ['dcn', 'dcnv2', 'empirical_attention', 'gcnet', 'gn',
                  'gn+ws'],
    },
    'a training recipe or data pipeline for an architecture covered by its '
    'own folder': {
        'mmdet': ['albu_example', 'instaboost', 'simple_copy_paste',
                  'strong_baselines', 'scratch', 'misc', 'soft_teacher'],
    },
    'knowledge distillation: needs a trained teacher (config path inside an '
    'MMDetection checkout + downloaded checkpoint)': {
        'mmdet': ['ld', 'lad'],
    },
    'panoptic segmentation: needs panoptic annotations (the demo data has '
    'instances and semantic maps only)': {
        'mmdet': ['panoptic_fpn', 'maskformer'],
    },
    'video / tracking / re-identification (needs video data)': {
        'mmdet': ['bytetrack', 'deepsort', 'masktrack_rcnn',
                  'mask2former_vis', 'ocsort', 'qdtrack', 'reid', 'sort',
                  'strongsort'],
    },
    'open-vocabulary grounding: needs a BERT text encoder (download)': {
        'mmdet': ['glip', 'grounding_dino', 'mm_grounding_dino'],
        'mmseg': ['san'],
    },
    'built around its own CNN: the backbone is part of the method': {
        # Hourglass stacks (CornerNet heads read every stack), TridentNet's
        # weight-sharing branches inside ResNet stage 4, DetectoRS'
        # recursive FPN feeding back into ResNet (rfp_forward).
        'mmdet': ['cornernet', 'centripetalnet', 'tridentnet', 'detectors'],
        # Real-time networks whose own backbone is the method.
        'mmseg': ['bisenetv1', 'bisenetv2', 'cgnet', 'ddrnet', 'erfnet',
                  'fastscnn', 'icnet', 'pidnet', 'stdc', 'unet'],
    },
    'heads built for a plain ViT (same-resolution layers, readout tokens)': {
        'mmseg': ['dpt', 'setr', 'segmenter'],
    },
    'a diffusion-model backbone (Stable Diffusion weights)': {
        'mmseg': ['vpd'],
    },
}
NOT_APPLICABLE = {(lib, folder): reason for reason, libs in _NA.items()
                  for lib, folders in libs.items() for folder in folders}

#: Folders whose simplest ResNet-50 config is not the one to run.
REPRESENTATIVE = {
    ('mmdet', 'htc'): 'htc-without-semantic_r50_fpn_1x_coco.py',
    ('mmdet', 'mask2former'): 'mask2former_r50_8xb2-lsj-50e_coco.py',
    ('mmdet', 'centernet'): 'centernet_r18_8xb16-crop512-140e_coco.py',
    ('mmdet', 'guided_anchoring'): 'ga-retinanet_r50_fpn_1x_coco.py',
    ('mmdet', 'pisa'): 'faster-rcnn_r50_fpn_pisa_1x_coco.py',
    ('mmdet', 'seesaw_loss'):
        'mask-rcnn_r50_fpn_seesaw-loss_random-ms-2x_lvis-v1.py',
    ('mmdet', 'yolo'): 'yolov3_d53_8xb8-320-273e_coco.py',
    ('mmdet', 'yolox'): 'yolox_s_8xb8-300e_coco.py',
    ('mmdet', 'rtmdet'): 'rtmdet_s_8xb32-300e_coco.py',
    ('mmdet', 'ssd'): 'ssd300_coco.py',
    ('mmdet', 'crowddet'): 'crowddet-rcnn_r50_fpn_8xb2-30e_crowdhuman.py',
    ('mmdet', 'ddq'): 'ddq-detr-4scale_r50_8xb2-12e_coco.py',
    ('mmdet', 'fast_rcnn'): 'fast-rcnn_r50_fpn_1x_coco.py',
    ('mmdet', 'fcos'): 'fcos_r50-caffe_fpn_gn-head_1x_coco.py',
    ('mmdet', 'libra_rcnn'): 'libra-faster-rcnn_r50_fpn_1x_coco.py',
    ('mmdet', 'nas_fpn'): 'retinanet_r50_nasfpn_crop640-50e_coco.py',
    ('mmseg', 'ocrnet'): 'ocrnet_r101-d8_4xb2-40k_cityscapes-512x1024.py',
    ('mmseg', 'segnext'): 'segnext_mscan-t_1xb16-adamw-160k_ade20k-512x512.py',
    ('mmseg', 'segformer'): 'segformer_mit-b0_8xb2-160k_ade20k-512x512.py',
}
#: Image side per folder where 64 pixels is too small for the head.
IMAGE_SIZE = {('mmdet', 'ssd'): 300,
              # DINO's two-stage query selection takes the top 900 encoder
              # tokens: 256 px gives 1360 tokens over its 4 levels
              ('mmdet', 'dino'): 256,
              # mmcv's DeformConv2d needs maps of at least 3x3: DDOD's P7
              # (stride 128) at 384 px
              ('mmdet', 'ddod'): 384}
#: Per-folder config options, applied last (``--cfg-options`` style).
FOLDER_OPTIONS = {
    # lr 0.08 is for batch 64 after a warm-up; from scratch without one the
    # boxes degenerate and nothing is left to evaluate
    ('mmdet', 'fpg'): {'optim_wrapper.optimizer.lr': 0.0025},
}
def _fix_cascade_rpn(cfg) -> None:
    """MMDetection 3.3's own config does not build (with ResNet-50 either):
    set `rpn_head.num_classes=1` and drop `sampling` from its stages; and
    the rpn fix"""
    head = cfg.model.rpn_head
    head.num_classes = 1
    for stage in head.stages:
        stage.pop('sampling', None)
    _fix_rpn(cfg)


def _fix_rpn(cfg) -> None:
    """MMDetection 3.3's `proposal_fast` recall fails under NumPy >= 1.24
    (ragged arrays): evaluate with `metric='proposal'` (COCO API)"""
    cfg.val_evaluator.metric = ['proposal']
    cfg.test_evaluator = cfg.val_evaluator


def _fix_ssd(cfg) -> None:
    """MMDetection 3.3's `SSDHead` has no `loss_cls`, which prediction
    reads: `SSDHead.loss_cls = None` before building"""
    from mmdet.models.dense_heads import SSDHead
    SSDHead.loss_cls = None


#: Workarounds for bugs of the library's own configs / code, applied last
#: (each fails with the config's own backbone too without it).
LIBRARY_FIXES = {('mmdet', 'cascade_rpn'): _fix_cascade_rpn,
                 ('mmdet', 'rpn'): _fix_rpn,
                 ('mmdet', 'ssd'): _fix_ssd}
#: Heads built for one class and crowds (CrowdDet's multi-instance
#: pedestrian head assigns 2 boxes per proposal): every shape is one class,
#: scenes with 2 or more shapes only.
SINGLE_CLASS = {('mmdet', 'crowddet')}
DEFAULT_SIZE = 64


def configs_root(lib: str) -> str:
    from pvt_mm_config_hook import configs_dir
    return configs_dir(lib)


def pick_representative(lib: str, folder: str, files) -> str:
    """The simplest ResNet-50 config of a folder: R-50 first, then the
    library's main dataset (COCO / ADE20K), then the shortest name."""
    if (lib, folder) in REPRESENTATIVE:
        return REPRESENTATIVE[(lib, folder)]
    dataset = 'coco' if lib == 'mmdet' else 'ade20k'

    def score(name):
        return ('r50' not in name, dataset not in name, 'caffe' in name,
                'ms' in name.split('_')[-2:], len(name), name)
    return min(files, key=score)


def walk_folders(libs=LIBS):
    """``(lib, folder, representative config or None, reason or None)``
    for every config folder of the libraries."""
    rows = []
    for lib in libs:
        root = configs_root(lib)
        for folder in sorted(os.listdir(root)):
            path = osp.join(root, folder)
            if not osp.isdir(path):
                continue
            files = sorted(f for f in os.listdir(path) if f.endswith('.py'))
            reason = NOT_APPLICABLE.get((lib, folder))
            if reason is None and not files:
                reason = 'no model configs'
            rep = None if reason else pick_representative(lib, folder, files)
            rows.append((lib, folder, rep, reason))
    return rows


# ---------------------------------------------------------------- one cell
def _walk(node, fn):
    """Call ``fn(dict)`` on every dict nested in ``node``."""
    if isinstance(node, dict):
        fn(node)
        for v in list(node.values()):
            _walk(v, fn)
    elif isinstance(node, (list, tuple)):
        for v in node:
            _walk(v, fn)


SEMANTIC_LABELS = 5  # demo label maps: 0 unlabelled, 1 background, 2-4


def _set_classes(model, num_classes: int) -> None:
    """Every class count of the heads (not the RPN's single class)."""
    def fix(node, key=''):
        if isinstance(node, (list, tuple)):
            for v in node:
                fix(v, key)
            return
        if not isinstance(node, dict) or 'rpn' in key:
            return
        if key == 'semantic_head':  # HTC / SCNet: the demo label maps
            node['num_classes'] = SEMANTIC_LABELS  # hold values 0..4
            return
        if isinstance(node.get('num_classes'), int):
            node['num_classes'] = num_classes
        if isinstance(node.get('num_things_classes'), int):
            node['num_things_classes'] = num_classes
            node['num_stuff_classes'] = 0
        weights = node.get('class_weight')
        if isinstance(weights, (list, tuple)) and len(weights) > num_classes:
            # per-class weights + one for "no object": uniform + that one
            node['class_weight'] = [1.0] * num_classes + [weights[-1]]
        for k, v in list(node.items()):
            fix(v, k)
    fix(model)


def _no_syncbn(node) -> None:
    def fix(d):
        if d.get('type') in ('SyncBN', 'MMSyncBN', 'nnSyncBN'):
            d['type'] = 'BN'
    _walk(node, fix)


def _needs_masks(cfg) -> bool:
    found = []

    def look(d):
        if str(d.get('type', '')).endswith('LoadAnnotations') and d.get(
                'with_mask'):
            found.append(d)
    _walk(cfg.get('train_dataloader', {}), look)
    return bool(found)


def _uses(cfg, transform: str, **options) -> bool:
    """Whether the original training pipeline has ``transform`` (with
    ``options``)."""
    found = []

    def look(d):
        if str(d.get('type', '')).split('.')[-1] == transform and all(
                d.get(k) == v for k, v in options.items()):
            found.append(d)
    _walk(cfg.get('train_dataloader', {}), look)
    return bool(found)


def make_proposals(coco_root: str, split: str) -> str:
    """Precomputed proposals for Fast R-CNN-style configs: each image's
    ground-truth boxes, jittered, plus random boxes (``<root>/proposals``)."""
    import pickle

    import numpy as np
    out = osp.join(coco_root, 'proposals', f'{split}.pkl')
    if osp.isfile(out):
        return out
    with open(osp.join(coco_root, 'annotations',
                       f'instances_{split}.json')) as f:
        coco = json.load(f)
    rng = np.random.RandomState(0)
    boxes = {im['id']: [] for im in coco['images']}
    for ann in coco['annotations']:
        x, y, w, h = ann['bbox']
        boxes[ann['image_id']].append([x, y, x + w, y + h])
    proposals = {}
    for im in coco['images']:
        side = im['width']
        gt = np.array(boxes[im['id']] or [[0, 0, side, side]], np.float32)
        jitter = gt[None] + rng.uniform(-4, 4, (10, ) + gt.shape)
        xy = rng.uniform(0, side * 0.6, (40, 2))
        wh = rng.uniform(side * 0.1, side * 0.4, (40, 2))
        rand = np.concatenate([xy, xy + wh], 1)
        bboxes = np.clip(np.concatenate([jitter.reshape(-1, 4), rand]), 0,
                         side).astype(np.float32)
        proposals[f"{split}/{im['file_name']}"] = dict(
            bboxes=bboxes, scores=rng.uniform(0.1, 1, len(bboxes)).astype(
                np.float32))
    os.makedirs(osp.dirname(out), exist_ok=True)
    with open(out, 'wb') as f:
        pickle.dump(proposals, f)
    return out


def single_class_annotations(coco_root: str) -> str:
    """COCO files with every shape as class 'shape' and only the scenes
    with 2+ shapes (``annotations/crowd_{split}.json``)."""
    for split in ('train', 'val'):
        out = osp.join(coco_root, 'annotations', f'crowd_{split}.json')
        if osp.isfile(out):
            continue
        with open(osp.join(coco_root, 'annotations',
                           f'instances_{split}.json')) as f:
            coco = json.load(f)
        count = {}
        for a in coco['annotations']:
            count[a['image_id']] = count.get(a['image_id'], 0) + 1
            a['category_id'] = 1
        keep = {i for i, n in count.items() if n >= 2}
        coco['images'] = [im for im in coco['images'] if im['id'] in keep]
        coco['annotations'] = [a for a in coco['annotations']
                               if a['image_id'] in keep]
        coco['categories'] = [dict(id=1, name='shape', supercategory='shape')]
        with open(out, 'w') as f:
            json.dump(coco, f)
    return 'annotations/crowd_{}.json'


def _metric(cfg) -> list:
    ev = cfg.get('val_evaluator') or {}
    if isinstance(ev, (list, tuple)):
        ev = ev[0] if ev else {}
    metric = ev.get('metric', 'bbox')
    return list(metric) if isinstance(metric, (list, tuple)) else [metric]


def adapt_to_demo(cfg, lib: str, data_root: str, size: int, iters: int,
                  work_dir: str, single_class: bool = False) -> None:
    """Point a swapped config at the demo data and a short CPU run. Touches
    the run (data, schedule, hooks, SyncBN, class count), never the
    architecture."""
    size = (size, size)
    model = cfg.model
    _no_syncbn(model)
    # An untrained model scores below the usual 0.05 threshold: keep every
    # detection so the metric is computed on real predictions.
    _walk(model.get('test_cfg') or {}, lambda d: d.update(score_thr=0.0)
          if 'score_thr' in d else None)
    classes = ('rectangle', 'ellipse', 'triangle')
    dp = model.get('data_preprocessor') or {}
    if dp.get('batch_augments'):
        kept = []
        for aug in dp['batch_augments']:
            if aug.get('type') == 'BatchFixedSizePad':
                aug['size'] = size
                kept.append(aug)
        dp['batch_augments'] = kept or None
    loader = dict(num_workers=0, persistent_workers=False)
    if lib == 'mmdet':
        root = osp.join(data_root, 'coco') + '/'
        ann = 'annotations/instances_{}.json'
        if single_class:
            classes = ('shape', )
            ann = single_class_annotations(root)
        _set_classes(model, len(classes))
        masks = _needs_masks(cfg)
        # Fast R-CNN reads precomputed proposals (images stay at their size
        # so the proposals need no resizing)
        proposals = _uses(cfg, 'LoadProposals')
        # HTC / SCNet's semantic branch: the demo's label maps (same scenes)
        seg = _uses(cfg, 'LoadAnnotations', with_seg=True)
        load = dict(type='LoadAnnotations', with_bbox=True, with_mask=masks,
                    with_seg=seg)
        extra = [dict(type='LoadProposals', num_max_proposals=None)
                 ] if proposals else []
        resize = [dict(type='Resize', scale=size, keep_ratio=True)]
        train_pipe = [dict(type='LoadImageFromFile'), load, *extra, *resize,
                      *([] if proposals else [dict(type='RandomFlip',
                                                   prob=0.5)]),
                      dict(type='PackDetInputs')]
        # CenterNet predicts in the padded frame of its test-time
        # RandomCenterCropPad and reads the `border` it records.
        centre = []
        _walk(cfg.get('val_dataloader', {}), lambda d: centre.append(d)
              if d.get('type') == 'RandomCenterCropPad' else None)
        test_pipe = [dict(type='LoadImageFromFile', to_float32=bool(centre)),
                     *extra, *resize, *centre[:1], dict(load, with_seg=False),
                     dict(type='PackDetInputs', meta_keys=(
                         'img_id', 'img_path', 'ori_shape', 'img_shape',
                         'scale_factor') + (('border', ) if centre else ()))]
        data = dict(type='CocoDataset', data_root=root,
                    metainfo=dict(classes=classes))
        files = {split: dict(proposal_file=make_proposals(root, split))
                 if proposals else {} for split in ('train', 'val')}
        cfg.train_dataloader = dict(
            batch_size=2, **loader,
            sampler=dict(type='DefaultSampler', shuffle=True),
            dataset=dict(data, ann_file=ann.format('train'),
                         data_prefix=dict(img='train/', **(dict(seg=osp.join(
                             osp.abspath(data_root), 'ade', 'annotations',
                             'training') + '/') if seg else {})),
                         seg_map_suffix='.png',
                         filter_cfg=dict(filter_empty_gt=True, min_size=4),
                         pipeline=train_pipe, **files['train']))
        cfg.val_dataloader = dict(
            batch_size=1, **loader,
            sampler=dict(type='DefaultSampler', shuffle=False),
            dataset=dict(data, ann_file=ann.format('val'),
                         data_prefix=dict(img='val/'), test_mode=True,
                         pipeline=test_pipe, **files['val']))
        metric = [m for m in _metric(cfg)
                  if m in ('bbox', 'segm', 'proposal_fast', 'proposal')]
        if masks and 'segm' not in metric and 'bbox' in metric:
            metric.append('segm')
        cfg.val_evaluator = dict(type='CocoMetric', metric=metric or ['bbox'],
                                 ann_file=root + ann.format('val'))
    else:
        _set_classes(model, len(classes) + 1)  # + background
        model.data_preprocessor = dict(model.get('data_preprocessor') or {},
                                       size=size)
        model.test_cfg = dict(model.get('test_cfg') or {}, mode='whole')
        model.test_cfg.pop('crop_size', None)
        model.test_cfg.pop('stride', None)
        pipe = [dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations', reduce_zero_label=True),
                dict(type='Resize', scale=size, keep_ratio=True),
                dict(type='PackSegInputs')]
        data = dict(type='BaseSegDataset', data_root=osp.join(data_root, 'ade'),
                    img_suffix='.jpg', seg_map_suffix='.png',
                    reduce_zero_label=True,
                    metainfo=dict(classes=('background', ) + classes))
        cfg.train_dataloader = dict(
            batch_size=2, **loader,
            sampler=dict(type='InfiniteSampler', shuffle=True),
            dataset=dict(data, pipeline=pipe, data_prefix=dict(
                img_path='images/training',
                seg_map_path='annotations/training')))
        cfg.val_dataloader = dict(
            batch_size=1, **loader,
            sampler=dict(type='DefaultSampler', shuffle=False),
            dataset=dict(data, pipeline=pipe, data_prefix=dict(
                img_path='images/validation',
                seg_map_path='annotations/validation')))
        cfg.val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
    cfg.test_dataloader = cfg.val_dataloader
    cfg.test_evaluator = cfg.val_evaluator
    # Schedule: a few iterations, evaluation called by run_cell.
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters,
                         val_interval=iters + 1)
    cfg.val_cfg = dict(type='ValLoop')
    cfg.test_cfg = dict(type='TestLoop')
    cfg.param_scheduler = None
    ow = cfg.optim_wrapper
    if ow.get('type') == 'AmpOptimWrapper':  # fp16 needs a GPU
        ow.type = 'OptimWrapper'
        for key in ('loss_scale', 'dtype'):
            ow.pop(key, None)
    cfg.custom_hooks = []  # EMA, mode switches: recipe, not architecture
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook',
                                        interval=10 ** 9, save_last=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.auto_scale_lr = dict(enable=False, base_batch_size=16)
    cfg.pop('tta_model', None)
    cfg.load_from, cfg.resume = None, False
    cfg.launcher = 'none'
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=0)
    cfg.log_level = 'WARNING'
    cfg.env_cfg = dict(cudnn_benchmark=False,
                       mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
                       dist_cfg=dict(backend='gloo'))


def run_cell(lib: str, config: str, backbone: str, data_root: str,
             size: int, iters: int, work_dir: str) -> dict:
    """Swap, adapt, train ``iters`` iterations and evaluate one config."""
    import importlib

    import torch
    from mmengine.runner import Runner

    import pvt_mm
    from pvt_mm.engine.runner import load_config
    torch.set_num_threads(int(os.environ.get('PVT_MM_TEST_THREADS', 1)))
    importlib.import_module(f'{lib}.utils').register_all_modules(
        init_default_scope=False)
    cfg = load_config(f'{lib}::{config}')
    if backbone == CONTROL:  # the config's own backbone, from scratch
        if 'pretrained' in cfg.model:
            cfg.model.pretrained = None
        cfg.model.backbone.pop('init_cfg', None)
    else:
        cfg = pvt_mm.swap_backbone(cfg, backbone, pretrained=None)
    adapt_to_demo(cfg, lib, data_root, size, iters, work_dir,
                  single_class=(lib, config.split('/')[0]) in SINGLE_CLASS)
    cfg.merge_from_dict(FOLDER_OPTIONS.get((lib, config.split('/')[0]), {}))
    fix = LIBRARY_FIXES.get((lib, config.split('/')[0]))
    if fix is not None:
        fix(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()
    loss = runner.message_hub.get_scalar('train/loss').current()
    if not math.isfinite(float(loss)):
        raise FloatingPointError(f'training loss is {loss}')
    metrics = runner.val_loop.run()
    # COCO scores nothing when no box survives post-processing, which a
    # detector after a few iterations from scratch can do: the evaluation
    # still ran over every image.
    return dict(loss=float(loss), evaluated=len(runner.val_dataloader.dataset),
                metrics={k: (float(v) if isinstance(v, (int, float)) else
                             str(v)) for k, v in metrics.items()})


#: Part of every cell's cache key with the backbones' and swap_backbone's
#: code: bump it when the adaptation below changes what a cell does (then
#: every cell reruns; ``--force`` reruns them regardless).
CELL_VERSION = '3'


def fingerprint() -> str:
    """Cache key of the cells: the backbones' code, pvt_mm/swap.py and
    CELL_VERSION."""
    h = hashlib.sha256(CELL_VERSION.encode())
    paths = glob.glob(osp.join(REPO, 'pvt_mm', 'models', '**', '*.py'),
                      recursive=True) + [osp.join(REPO, 'pvt_mm', 'swap.py')]
    for path in sorted(paths):
        with open(path, 'rb') as f:
            h.update(f.read())
    return h.hexdigest()[:16]


def _error_line(text: str) -> str:
    """The exception line of a traceback (last line naming an error)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ('Error' in ln or 'Exception' in ln) and not ln.startswith(
                'File '):
            return ln[:300]
    return lines[-1][:300] if lines else 'no output'


def cell_outcome(lib: str, config: str, backbone: str, data_root: str,
                 size: int, iters: int, work_dir: str) -> dict:
    """:func:`run_cell` as a cell record: its metrics and ``status='ok'``,
    or ``status='fail'`` with the error (the traceback goes to stderr, the
    cell's log); ``seconds`` either way."""
    t0 = time.time()
    try:
        out = run_cell(lib, config, backbone, data_root, size, iters,
                       work_dir)
        out.update(status='ok')
    except Exception as e:  # reported, not raised: the parent records it
        import traceback
        traceback.print_exc()
        out = dict(status='fail', error=f'{type(e).__name__}: {e}'[:600])
    out['seconds'] = round(time.time() - t0, 1)
    return out


def ensure_demo_data(data_root: str) -> None:
    from pvt_mm.data.demo_data import demo_data_ready, make_demo_data
    if not demo_data_ready(data_root):
        make_demo_data(data_root, num_train=8, num_val=4, size=DEFAULT_SIZE,
                       cls_size=32)


def preload() -> None:
    """Import what every cell needs once, before the cells are forked."""
    import importlib

    import mmengine.runner  # noqa: F401
    import pvt_mm  # noqa: F401
    for lib in LIBS:
        importlib.import_module(f'{lib}.utils').register_all_modules(
            init_default_scope=False)


def _forked_cell(result_file, log_file, lib, config, backbone, data_root,
                 size, iters, work_dir) -> None:
    """Body of a forked cell: output to ``log_file``, result to
    ``result_file`` (JSON)."""
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    out = cell_outcome(lib, config, backbone, data_root, size, iters,
                       work_dir)
    with open(result_file, 'w') as f:
        json.dump(out, f)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_cell_forked(lib, folder, config, backbone, args, fp) -> dict:
    """One cell in a forked child of the preloaded tool (a process of its
    own, without re-importing torch / mmdet / mmseg per cell)."""
    import multiprocessing as mp
    size = IMAGE_SIZE.get((lib, folder), DEFAULT_SIZE)
    work_dir = osp.join(args.cache, 'work', f'{lib}_{folder}_{backbone}')
    os.makedirs(osp.join(args.cache, 'logs'), exist_ok=True)
    log_file = osp.join(args.cache, 'logs', f'{lib}_{folder}_{backbone}.log')
    result_file = log_file[:-4] + '.result.json'
    if osp.exists(result_file):
        os.remove(result_file)
    t0 = time.time()
    child = mp.get_context('fork').Process(
        target=_forked_cell,
        args=(result_file, log_file, lib, f'{folder}/{config}', backbone,
              osp.join(args.cache, 'data'), size, args.iters, work_dir))
    child.start()
    child.join(args.timeout)
    if child.is_alive():
        child.kill()
        child.join()
        out = dict(status='timeout', error=f'over {args.timeout} s')
    elif osp.isfile(result_file):
        with open(result_file) as f:
            out = json.load(f)
        os.remove(result_file)
    else:
        with open(log_file, errors='replace') as f:
            out = dict(status='fail', error=_error_line(f.read()) +
                       f' (exit code {child.exitcode})')
    out.setdefault('seconds', round(time.time() - t0, 1))
    out.update(lib=lib, folder=folder, config=config, backbone=backbone,
               size=size, iters=args.iters, fingerprint=fp)
    return out


def run_cell_subprocess(lib, folder, config, backbone, args, fp) -> dict:
    """One cell in a new interpreter, through the harness's worker
    protocol (``compat_matrix.py --worker cell SPEC``)."""
    size = IMAGE_SIZE.get((lib, folder), DEFAULT_SIZE)
    spec = dict(lib=lib, config=f'{folder}/{config}', backbone=backbone,
                data_root=osp.join(args.cache, 'data'), size=size,
                iters=args.iters, work_dir=osp.join(
                    args.cache, 'work', f'{lib}_{folder}_{backbone}'))
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [REPO] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p])
    t0 = time.time()
    run = run_worker_process(__file__, 'cell', spec, args.timeout, cwd=REPO,
                             env=env)
    if run.returncode is None:
        out = dict(status='timeout', error=f'over {args.timeout} s')
    elif run.result is None:
        out = dict(status='fail', error=_error_line(run.stderr or run.stdout))
    else:
        out = run.result
    out.setdefault('seconds', round(time.time() - t0, 1))
    out.update(lib=lib, folder=folder, config=config, backbone=backbone,
               size=size, iters=args.iters, fingerprint=fp)
    os.makedirs(osp.join(args.cache, 'logs'), exist_ok=True)
    with open(osp.join(args.cache, 'logs',
                       f'{lib}_{folder}_{backbone}.log'), 'w') as f:
        f.write(run.stderr[-20000:])
    return out


def cell_path(cache, lib, folder, backbone):
    return osp.join(cache, 'cells', f'{lib}__{folder}__{backbone}.json')


def load_cell(cache, lib, folder, backbone, fp=None):
    path = cell_path(cache, lib, folder, backbone)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        cell = json.load(f)
    if fp is not None and cell.get('fingerprint') != fp:
        return None
    return cell


# ---------------------------------------------------------------- the table
def summarize(rows, cells) -> dict:
    """Per library: applicable folders; how many work (every REQUIRED
    backbone passes), fail also with the config's own backbone (the
    library's), or fail with ours only; per-backbone counts."""
    out = {}
    for lib in LIBS:
        arch = [f for (lb, f, rep, reason) in rows
                if lb == lib and reason is None]
        if not arch:
            continue

        def status(f):
            got = [(cells.get((lib, f, b)) or {}).get('status')
                   for b in REQUIRED]
            if all(g == 'ok' for g in got):
                return 'works'
            if None in got:
                return 'not run'
            if any(g in ('fail', 'timeout') for g in got):
                return 'ours'
            return 'library'
        states = {f: status(f) for f in arch}
        count = {k: sum(v == k for v in states.values())
                 for k in ('works', 'library', 'ours', 'not run')}
        measurable = len(arch) - count['library']
        out[lib] = dict(
            applicable=len(arch), **count,
            percent=round(100.0 * count['works'] / len(arch), 1),
            percent_measurable=round(100.0 * count['works'] /
                                     max(measurable, 1), 1),
            per_backbone={b: sum((cells.get((lib, f, b)) or {}).get(
                'status') == 'ok' for f in arch) for b in BACKBONES},
            run={b: sum((lib, f, b) in cells for f in arch)
                 for b in BACKBONES},
            not_applicable=sum(1 for r in rows if r[0] == lib
                               and r[3] is not None))
    return out


def _clean(text: str, n: int = 160) -> str:
    return ' '.join(str(text).replace('|', '/').split())[:n]


def _cell_text(cell) -> str:
    if cell is None:
        return 'not run'
    if cell['status'] == 'ok':
        return 'yes' if cell.get('metrics') else 'yes (nothing detected yet)'
    if cell['status'] == 'library':
        return ('library: fails with its own backbone too: ' +
                _clean(cell['control'].get('error') or ''))
    return '**no**: ' + _clean(cell.get('error', cell['status']))


def render_markdown(result: dict) -> str:
    rows, cells = result['folders'], {
        (c['lib'], c['folder'], c['backbone']): c for c in result['cells']}
    summary = result['summary']
    lines = [MARK_BEGIN, '',
             f"Measured by `benchmarks/compat_matrix.py` "
             f"(test: `tests/tools/test_compat_matrix.py`) with MMDetection "
             f"{result['versions'].get('mmdet')} and MMSegmentation "
             f"{result['versions'].get('mmseg')}: each folder's representative "
             f"config, `pvt_mm.swap_backbone(cfg, name, pretrained=None)`, "
             f"{result['iters']} training iterations and one evaluation on "
             f"the generated demo data (64-pixel images) through the "
             f"library's own Runner, on CPU. A folder works when "
             f"{' and '.join(BACKBONE_TITLES[b] for b in REQUIRED)} both "
             f"pass. A failing cell is rerun with the config's own backbone "
             f"(the control); when that fails too, the cell says "
             f"`library` and shows the control's error.", '']
    for lib, s in summary.items():
        pb = ', '.join(f'{BACKBONE_TITLES[b]} {s["per_backbone"][b]}/'
                       f'{s["run"][b]}' for b in BACKBONES)
        lines.append(
            f"- **{lib}**: {s['works']} of {s['applicable']} architecture "
            f"folders work ({s['percent']}%); {s['library']} fail with the "
            f"config's own backbone too (the library's or this CPU's "
            f"limits, excluded: {s['percent_measurable']}% of the rest "
            f"work); {s['ours']} fail with pvt_mm only; {s['not run']} not "
            f"run. Cells passing per backbone: {pb}. "
            f"{s['not_applicable']} folders are not applicable (below).")
    lines += ['', '| library | folder | config | ' +
              ' | '.join(BACKBONE_TITLES[b] for b in BACKBONES) + ' |',
              '|---|---|---|' + '---|' * len(BACKBONES)]
    for lib, folder, rep, reason in rows:
        if reason is not None:
            continue
        lines.append(f'| {lib} | {folder} | `{rep}` | ' + ' | '.join(
            _cell_text(cells.get((lib, folder, b))) for b in BACKBONES) + ' |')
    adapt = [f'{lib}/{f}: {size}-pixel images' for (lib, f), size in
             sorted(IMAGE_SIZE.items())]
    adapt += [f'{lib}/{f}: one class (the head is single-class)'
              for lib, f in sorted(SINGLE_CLASS)]
    adapt += [f'{lib}/{f}: ' + ', '.join(f'`{k}={v}`' for k, v in o.items())
              for (lib, f), o in sorted(FOLDER_OPTIONS.items())]
    lines += ['', 'Per-folder adaptations of the run: ' + '; '.join(adapt)
              + '.', '', 'Workarounds for the library\'s own bugs, applied '
              'in the run (documented, not pvt_mm changes):', '']
    lines += [f'- {lib}/{f}: ' + ' '.join(fn.__doc__.split()) + '.'
              for (lib, f), fn in sorted(LIBRARY_FIXES.items())]
    lines += ['', 'Not applicable (not an architecture that takes an '
              'ImageNet backbone\'s features, or needs data the demo cannot '
              'provide):', '', '| library | reason | folders |', '|---|---|---|']
    by_reason = {}
    for lib, folder, rep, reason in rows:
        if reason is not None:
            by_reason.setdefault((lib, reason), []).append(folder)
    for (lib, reason), folders in by_reason.items():
        lines.append(f'| {lib} | {reason} | {", ".join(folders)} |')
    lines += ['', MARK_END]
    return '\n'.join(lines)


def write_doc(doc: str, markdown: str) -> None:
    """Put :func:`render_markdown`'s table between the doc's markers (the
    harness's replace_doc_block), or append it, markers and all, to a doc
    that has none yet."""
    with open(doc) as f:
        text = f.read()
    if MARK_BEGIN in text and MARK_END in text:
        inner = markdown[len(MARK_BEGIN) + 1:markdown.rindex(MARK_END)]
        replace_doc_block(doc, MARK_BEGIN, MARK_END, inner)
    else:
        with open(doc, 'w') as f:
            f.write(text.rstrip('\n') + '\n\n' + markdown + '\n')


def versions() -> dict:
    out = {}
    for lib in LIBS:
        import importlib
        out[lib] = importlib.import_module(lib).__version__
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--libs', nargs='+', default=list(LIBS), choices=LIBS)
    p.add_argument('--folders', nargs='+', help='only these folders')
    p.add_argument('--backbones', nargs='+', default=list(BACKBONES))
    p.add_argument('--iters', type=int, default=2)
    p.add_argument('--timeout', type=int, default=180,
                   help='seconds per cell')
    p.add_argument('--cache', default=osp.join(REPO, 'work_dirs',
                                               'compat_matrix'))
    p.add_argument('--force', action='store_true',
                   help='rerun cached cells too')
    p.add_argument('--report-only', action='store_true',
                   help='run nothing: write the table from the cache')
    p.add_argument('--keep-recorded', action='store_true',
                   help='cells not in the cache (or cached for other code) '
                   'are taken as recorded in --json, each with the '
                   'fingerprint of the code it measured: with --folders, '
                   'update those folders without rerunning the rest')
    p.add_argument('--json', default=osp.join(REPO, 'docs',
                                              'compat_matrix.json'))
    p.add_argument('--doc', default=osp.join(REPO, 'docs',
                                             'use_in_your_project.md'))
    p.add_argument('--subprocess', action='store_true',
                   help='start each cell as a new interpreter (default: '
                   'fork it from this process after importing once)')
    p.add_argument('--no-write', action='store_true',
                   help='do not write --json / --doc')
    # a cell in its own interpreter (--subprocess): the harness's protocol
    p.add_argument('--worker', nargs=2, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.worker:  # kind 'cell', the only one
        print_result(cell_outcome(**json.loads(args.worker[1])))
        return {}
    rows = walk_folders(args.libs)
    fp = fingerprint()
    os.makedirs(osp.join(args.cache, 'cells'), exist_ok=True)
    if not args.report_only:
        ensure_demo_data(osp.join(args.cache, 'data'))
        if not args.subprocess:
            preload()
    run = run_cell_subprocess if args.subprocess else run_cell_forked
    todo = [(lib, folder, rep) for lib, folder, rep, reason in rows
            if reason is None and (not args.folders or folder in args.folders)]
    for backbone in args.backbones:  # every folder once before the next
        for lib, folder, rep in todo:
            if args.report_only:
                continue
            if not args.force and load_cell(args.cache, lib, folder,
                                            backbone, fp):
                continue
            cell = run(lib, folder, rep, backbone, args, fp)
            if cell['status'] != 'ok':
                control = load_cell(args.cache, lib, folder, CONTROL, fp)
                if control is None or control.get('config') != rep:
                    control = run(lib, folder, rep, CONTROL, args, fp)
                    with open(cell_path(args.cache, lib, folder, CONTROL),
                              'w') as f:
                        json.dump(control, f, indent=1)
                cell['control'] = dict(status=control['status'],
                                       error=control.get('error'))
                if control['status'] != 'ok':
                    cell['status'] = 'library'
            with open(cell_path(args.cache, lib, folder, backbone), 'w') as f:
                json.dump(cell, f, indent=1)
            print(f"{lib:6s} {folder:20s} {backbone:12s} {cell['status']:8s}"
                  f" {cell['seconds']:6.1f}s {cell.get('error', '')[:150]}"
                  + (f" || control: {cell['control']['status']} "
                     f"{(cell['control'].get('error') or '')[:100]}"
                     if 'control' in cell else ''), flush=True)
    cells = {}
    for lib, folder, rep, reason in rows:
        if reason is not None:
            continue
        for b in BACKBONES:
            c = load_cell(args.cache, lib, folder, b, fp)
            if c is not None and c.get('config') == rep:
                cells[(lib, folder, b)] = c
    if args.keep_recorded and osp.isfile(args.json):
        with open(args.json) as f:
            for c in json.load(f)['cells']:
                key = (c['lib'], c['folder'], c['backbone'])
                if key not in cells and (c['lib'], c['folder'], c['config'],
                                         None) in map(tuple, rows):
                    cells[key] = c
    result = dict(versions=versions(), iters=args.iters, fingerprint=fp,
                  folders=[list(r) for r in rows],
                  cells=[cells[k] for k in sorted(cells)],
                  summary=summarize(rows, cells))
    if not args.no_write:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1, sort_keys=True)
        write_doc(args.doc, render_markdown(result))
    for lib, s in result['summary'].items():
        print(f"{lib}: {s['works']}/{s['applicable']} architecture folders "
              f"work ({s['percent']}%; {s['percent_measurable']}% without "
              f"the {s['library']} that fail with their own backbone too), "
              f"ours {s['ours']}, not run {s['not run']}, per backbone "
              f"{s['per_backbone']}")
    return result


if __name__ == '__main__':
    main()
