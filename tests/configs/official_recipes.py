"""The official training recipes behind the configs in configs/, as data,
and the reading of a resolved MMEngine config into the same terms.

``OFFICIAL[config_stem]`` holds, for each config that has an official
recipe, every setting that changes the result - backbone drop-path rate,
optimizer, lr at the official batch, weight decay and what it skips,
warm-up, schedule, GPUs x images per GPU, fp16, gradient clipping,
train / test resizing and augmentation, sampler, test mode, evaluation -
each recipe with the official files it was read from (``source``).  The
official repositories use MMDetection 2 / MMSegmentation 0.x / timm, so
their settings are written here in one neutral vocabulary
(:func:`train_aug`, :func:`no_decay`, ...) and our MMEngine configs are
read into the same vocabulary by :func:`recipe_of`.

Why a config has no official recipe (``No Official Config``) and the
differences kept on purpose (``Deviations``, each with its reason) are
config metadata: they live in the metafiles (configs/<family>/metafile.yml,
read by pvt_mm.model_index) and docs/model_zoo.md explains them.
``tests/configs/test_recipes.py`` resolves every config and requires
``compare(OFFICIAL[name], recipe_of(cfg))`` to report nothing beyond the
listed deviations.
"""
import math

from pvt_mm import model_index

PVT = 'github.com/whai362/PVT (branch v2)'
PVT2_SEG = 'github.com/whai362/PVTv2-Seg'
CVT_REPO = 'github.com/leoxiaobin/CvT'

V1 = ('tiny', 'small', 'medium', 'large')
V1_SHORT = dict(tiny='t', small='s', medium='m', large='l')
V2 = ('b0', 'b1', 'b2', 'b2_li', 'b3', 'b4', 'b5')

# --------------------------------------------------------------------------
# The neutral vocabulary.  Scales are written (long side, short side).

def _scale(s):
    return (max(s), min(s))


MS_480_800 = tuple((1333, s) for s in range(480, 801, 32))
#: mmdet 2 ``AutoAugment`` of the PVTv2 3x configs (from DETR / Sparse
#: R-CNN): either a multi-scale resize, or resize - crop - multi-scale.
MS_CROP = (('flip', 0.5),
           ('one_of', (
               (('choice_resize', MS_480_800),),
               (('choice_resize', ((1333, 400), (1333, 500), (1333, 600))),
                ('crop', (384, 600), 'absolute_range'),
                ('choice_resize', MS_480_800)))))
DET_1X_AUG = (('resize', (1333, 800)), ('flip', 0.5))
DET_TEST = (('resize', (1333, 800)),)
SEG_AUG = (('random_resize', (2048, 512), (0.5, 2.0)),
           ('crop', (512, 512), 0.75), ('flip', 0.5), ('photometric',))
CLS_AUG = (('random_resized_crop', 224, 'bicubic'), ('flip', 0.5),
           ('rand_augment', 'timm_increasing', 2, 9, 0.5),
           ('random_erasing', 0.25))
CLS_TEST = (('resize_short', 256, 'bicubic'), ('center_crop', 224))
#: CvT's 384x384 files: 384x384 crops in training; at test a plain resize
#: to 384x384 (TEST.CENTER_CROP: False, TEST.INTERPOLATION: 3 = bicubic)
CLS_AUG_384 = (('random_resized_crop', 384, 'bicubic'),) + CLS_AUG[1:]
CLS_TEST_384 = (('resize_exact', (384, 384), 'bicubic'), )
#: timm ``add_weight_decay`` (PVT) / CvT ``set_wd``: no decay on 1-D
#: parameters (norms, biases) and on position embeddings / class tokens.
NO_DECAY_1D = frozenset({'1d', 'name:pos_embed', 'name:cls_token'})
#: mmdet 2 ``paramwise_cfg.custom_keys`` of the PVTv2 3x configs (names
#: containing ``norm``; the other two keys match no PVT parameter).
NO_DECAY_NORM = frozenset({'name:norm', 'name:absolute_pos_embed',
                           'name:relative_position_bias_table'})


def _det(source, arch, lr, *, imgs=2, gpus=8, wd=1e-4, epochs=12,
         milestones=(8, 11), fp16=False, clip=None, aug=DET_1X_AUG,
         test=DET_TEST, no_decay=frozenset(), metric=('bbox', ),
         drop_path=0.1, warmup=(500, 0.001), extra=None):
    r = dict(task='det', source=source, drop_path_rate=drop_path,
             optimizer='AdamW', lr=lr, weight_decay=wd, no_decay=no_decay,
             lr_mult={}, gpus=gpus, imgs_per_gpu=imgs, fp16=fp16,
             max_epochs=epochs, schedule=('step', tuple(milestones), 0.1),
             warmup=warmup, grad_clip=clip, train_aug=aug, test_aug=test,
             sampler='aspect_ratio_groups', metric=metric)
    r.update(extra or {})
    return r


def _pvt(*paths):
    return tuple(f'{PVT}: {p}' for p in paths)


DET_BASES = ('detection/configs/_base_/schedules/schedule_1x.py',
             'detection/configs/_base_/datasets/coco_detection.py')
INS_BASES = ('detection/configs/_base_/schedules/schedule_1x.py',
             'detection/configs/_base_/datasets/coco_instance.py')


def _v1_det_drop_path(arch):
    # detection/pvt.py: pvt_tiny / pvt_small pass drop_path_rate=0.1,
    # pvt_medium / pvt_large keep the class default 0.
    return 0.1 if arch in ('tiny', 'small') else 0.0


OFFICIAL = {}

# RetinaNet / Mask R-CNN 1x -------------------------------------------------
for _a in V1:
    _s = V1_SHORT[_a]
    _big = _a == 'large'
    OFFICIAL[f'retinanet_pvt_v1_{_a}_coco'] = _det(
        _pvt(f'detection/configs/retinanet_pvt_{_s}_fpn_1x_coco.py',
             *DET_BASES, 'detection/pvt.py'),
        _a, 1e-4, drop_path=_v1_det_drop_path(_a),
        fp16=_big)  # retinanet_pvt_l: EpochBasedRunnerAmp + use_fp16
    OFFICIAL[f'mask_rcnn_pvt_v1_{_a}_coco'] = _det(
        _pvt(f'detection/configs/mask_rcnn_pvt_{_s}_fpn_1x_coco.py',
             *INS_BASES, 'detection/pvt.py'),
        _a, 2e-4 / 1.4 if _big else 2e-4, imgs=1 if _big else 2,
        drop_path=_v1_det_drop_path(_a), metric=('bbox', 'segm'))
for _a in V2:
    _big = _a in ('b4', 'b5')
    OFFICIAL[f'retinanet_pvt_v2_{_a}_coco'] = _det(
        _pvt(f'detection/configs/retinanet_pvt_v2_{_a}_fpn_1x_coco.py',
             *DET_BASES, 'detection/pvt_v2.py'),
        _a, 1e-4 / 1.4 if _big else 1e-4, imgs=1 if _big else 2)
    OFFICIAL[f'mask_rcnn_pvt_v2_{_a}_coco'] = _det(
        _pvt(f'detection/configs/mask_rcnn_pvt_v2_{_a}_fpn_1x_coco.py',
             *INS_BASES, 'detection/pvt_v2.py'),
        _a, 2e-4 / 1.4 if _big else 2e-4, imgs=1 if _big else 2,
        metric=('bbox', 'segm'))

OFFICIAL['retinanet_pvt_v1_small_coco_640'] = _det(
    _pvt('detection/configs/retinanet_pvt_s_fpn_1x_coco_640.py',
         'detection/configs/_base_/schedules/schedule_1x.py',
         'detection/pvt.py'),
    'small', 1e-4, aug=(('resize', (1066, 640)), ('flip', 0.5)),
    test=(('resize', (1066, 640)),))

# PVTv2 3x multi-scale (DETR-style crop augmentation) -----------------------
_3X = dict(wd=0.05, epochs=36, milestones=(27, 33), aug=MS_CROP,
           no_decay=NO_DECAY_NORM)
for _a in ('b2', 'b2_li'):
    _mask3x = 'mask_rcnn_pvt_v2_%s_fpn_3x_mstrain.py' % _a
    OFFICIAL[f'mask_rcnn_pvt_v2_{_a}_coco_3x_ms'] = _det(
        _pvt('detection/configs/' + _mask3x, *INS_BASES), _a, 1e-4,
        metric=('bbox', 'segm'), fp16=_a == 'b2_li', **_3X)
    for _m in ('gfl', 'atss'):
        OFFICIAL[f'{_m}_pvt_v2_{_a}_coco_3x_ms'] = _det(
            _pvt(f'detection/configs/{_m}_pvt_v2_{_a}_fpn_3x_mstrain_fp16.py',
                 *DET_BASES), _a, 1e-4, fp16=True, **_3X)
    OFFICIAL[f'cascade_mask_rcnn_pvt_v2_{_a}_coco_3x_ms'] = _det(
        _pvt('detection/configs/cascade_mask_rcnn_pvt_v2_%s_fpn_3x_mstrain_'
             'fp16.py' % _a,
             'detection/configs/_base_/models/cascade_mask_rcnn_pvtv2_b2_fpn.py',
             *INS_BASES), _a, 1e-4, fp16=True, metric=('bbox', 'segm'),
        extra=dict(roi_bbox_head=('ConvFCBBoxHead', 4, 1, 'GIoULoss')),
        **_3X)
    # Sparse R-CNN: 300 proposals, B2 with 1 image per GPU at lr/1.4.
    OFFICIAL[f'sparse_rcnn_pvt_v2_{_a}_coco_3x_ms'] = _det(
        _pvt('detection/configs/sparse_rcnn_pvt_v2_%s_fpn_300_proposals_crop'
             '_mstrain_480-800_3x_coco.py' % _a, *DET_BASES), _a,
        2.5e-5 / 1.4 if _a == 'b2' else 2.5e-5, imgs=1 if _a == 'b2' else 2,
        epochs=36, milestones=(27, 33), aug=MS_CROP, clip=1.0,
        extra=dict(num_proposals=300))
# No official B0 3x config: the README row lists no config; this follows
# mask_rcnn_pvt_v2_b2_fpn_3x_mstrain.py (same table, same recipe).
OFFICIAL['mask_rcnn_pvt_v2_b0_coco_3x_ms'] = dict(
    OFFICIAL['mask_rcnn_pvt_v2_b2_coco_3x_ms'],
    source=_pvt('detection/README.md (3x row, no config)',
                'detection/configs/mask_rcnn_pvt_v2_b2_fpn_3x_mstrain.py'))

# DETR + PVT-Small (pvt_small_f4: the stride-32 map only), 50 epochs.
OFFICIAL['detr_pvt_v1_small_coco_50e'] = _det(
    _pvt('detection/configs/detr_pvt_s_8x2_50ep_coco.py', DET_BASES[1],
         'detection/pvt.py'),
    'small', 1e-4, epochs=50, milestones=(33, ), clip=0.1, warmup=None,
    aug=(('choice_resize', tuple((1333, s) for s in range(640, 801, 32))),
         ('flip', 0.5)),
    extra=dict(lr_mult={'backbone': 0.1}))

# Semantic FPN, ADE20K -------------------------------------------------------
def _seg(source):
    return dict(task='seg', source=source, drop_path_rate=0.1,
                optimizer='AdamW', lr=2e-4, weight_decay=1e-4,
                no_decay=frozenset(), lr_mult={}, gpus=8, imgs_per_gpu=4,
                fp16=False, max_iters=40000, schedule=('poly', 0.9, 0.0),
                warmup=None, grad_clip=None, train_aug=SEG_AUG,
                test_aug=(('align_resize', (2048, 512), 32),),
                test_mode='whole', sampler='infinite', metric=('mIoU', ))


# "gpu_multiples = 2  # we use 8 gpu instead of 4 in mmsegmentation, so
# lr*2 and max_iters/2": 8 GPUs x 4 images, lr 2e-4, 40k iterations.
for _a in V1:
    OFFICIAL[f'sem_fpn_pvt_v1_{_a}_ade20k_40k'] = _seg(_pvt(
        f'segmentation/configs/sem_fpn/PVT/fpn_pvt_{V1_SHORT[_a]}_ade20k_40k.py',
        'segmentation/configs/_base_/datasets/ade20k.py',
        'segmentation/pvt.py'))
# The PVTv1 paper's PVT-Small + Trans2Seg row (Table 7) trains "with the
# experimental settings in Sec. 5.3": the Semantic FPN recipe. No official
# config exists for the head; the recipe is compared with that one.
OFFICIAL['trans2seg_pvt_v1_small_ade20k_40k'] = dict(
    OFFICIAL['sem_fpn_pvt_v1_small_ade20k_40k'])
for _a in V2:
    OFFICIAL[f'sem_fpn_pvt_v2_{_a}_ade20k_40k'] = _seg(tuple(
        f'{PVT2_SEG}: {p}' for p in (
            f'configs/sem_fpn/PVTv2/fpn_pvtv2_{_a}_ade20k_40k.py',
            'configs/_base_/datasets/ade20k.py', 'pvtv2.py')))

# ImageNet-1k ----------------------------------------------------------------
def _cls(source, drop_path, clip, *, lr=5e-4 * 1024 / 512, imgs=128,
         wd=0.05, sampler='repeated_aug', train_aug=CLS_AUG,
         test_aug=CLS_TEST):
    return dict(task='cls', source=source, drop_path_rate=drop_path,
                optimizer='AdamW', lr=lr, weight_decay=wd,
                no_decay=NO_DECAY_1D, lr_mult={}, gpus=8, imgs_per_gpu=imgs,
                fp16=True, max_epochs=300, schedule=('cosine', 1e-5),
                # 5 warm-up epochs from lr 1e-6
                warmup=('epochs', 5, 1e-6 / lr), grad_clip=clip,
                train_aug=train_aug, test_aug=test_aug, sampler=sampler,
                batch_aug=(('Mixup', 0.8), ('CutMix', 1.0)),
                label_smoothing=0.1, metric=('accuracy', ))


# classification/main.py defaults: lr 5e-4 scaled by batch x GPUs / 512,
# weight decay 0.05, 5 warm-up epochs from 1e-6, cosine to 1e-5, native AMP,
# repeated augmentation; the per-model configs set drop_path and clip_grad.
_CLS_SETTINGS = dict(tiny=(0.1, None), small=(0.1, None), medium=(0.3, 1.0),
                     large=(0.3, 1.0), b0=(0.1, None), b1=(0.1, None),
                     b2=(0.1, None), b2_li=(0.1, None), b3=(0.3, 1.0),
                     b4=(0.3, 1.0), b5=(0.3, 1.0))
for _a, (_dp, _clip) in _CLS_SETTINGS.items():
    _v1 = _a in V1
    _name = f'cls_pvt_{"v1" if _v1 else "v2"}_{_a}_in1k'
    _file = (f'classification/configs/pvt/pvt_{_a}.py' if _v1 else
             f'classification/configs/pvt_v2/pvt_v2_{_a}.py')
    OFFICIAL[_name] = _cls(_pvt(_file, 'classification/main.py'), _dp, _clip)

# CvT: lr per GPU x GPUs (TRAIN.SCALE_LR), AMP, drop path on stage 3 only.
OFFICIAL['cls_cvt_13_in1k'] = _cls(
    tuple(f'{CVT_REPO}: {p}' for p in (
        'experiments/imagenet/cvt/cvt-13-224x224.yaml',
        'lib/config/default.py')),
    ('per_stage', (0.0, 0.0, 0.1)), None, lr=2.5e-4 * 8, imgs=256,
    sampler='random')
OFFICIAL['cls_cvt_21_in1k'] = _cls(
    tuple(f'{CVT_REPO}: {p}' for p in (
        'experiments/imagenet/cvt/cvt-21-224x224.yaml',
        'lib/config/default.py')),
    ('per_stage', (0.0, 0.0, 0.1)), None, lr=1.25e-4 * 8, imgs=128, wd=0.1)
# The 384x384 files: the 224 recipe at 384 (trained from scratch, no
# MODEL.PRETRAINED); CvT-21's drops repeated augmentation.
OFFICIAL['cls_cvt_13_384_in1k'] = _cls(
    tuple(f'{CVT_REPO}: {p}' for p in (
        'experiments/imagenet/cvt/cvt-13-384x384.yaml',
        'lib/config/default.py', 'lib/dataset/transformas/build.py')),
    ('per_stage', (0.0, 0.0, 0.1)), None, lr=2.5e-4 * 8, imgs=256,
    sampler='random', train_aug=CLS_AUG_384, test_aug=CLS_TEST_384)
OFFICIAL['cls_cvt_21_384_in1k'] = _cls(
    tuple(f'{CVT_REPO}: {p}' for p in (
        'experiments/imagenet/cvt/cvt-21-384x384.yaml',
        'lib/config/default.py', 'lib/dataset/transformas/build.py')),
    ('per_stage', (0.0, 0.0, 0.1)), None, lr=1.25e-4 * 8, imgs=128, wd=0.1,
    sampler='random', train_aug=CLS_AUG_384, test_aug=CLS_TEST_384)

# --------------------------------------------------------------------------
#: The demo configs (configs/demo/) are not in the model index.
DEMO_REASON = 'demo configs (configs/demo/) train on the generated demo data'


def _drop_path(backbone):
    # A list is per stage (CvT's convention), a number linear over all
    # blocks (pvt_mm.models.layers.stage_drop_paths).
    rate = backbone.get('drop_path_rate')
    if isinstance(rate, (list, tuple)):
        return ('per_stage', tuple(float(r) for r in rate))
    return rate


def no_official_reason(name):
    """Why ``name`` has no official recipe (its metafile's ``No Official
    Config``), or None."""
    if name.startswith('demo/'):
        return DEMO_REASON
    return model_index.no_official_config(name)


def deviations_for(name):
    """``{setting: reason}`` kept on purpose (its metafile's
    ``Deviations``)."""
    return model_index.deviations(name)


# --------------------------------------------------------------------------
# Reading a resolved MMEngine config into the same terms.

def _get(node, key, default=None):
    if node is None:
        return default
    return node.get(key, default) if hasattr(node, 'get') else default


def aug_of(pipeline):
    """The neutral form of an MMDetection 3 / MMSegmentation 1 /
    MMPretrain 1 data pipeline (loading and packing steps left out)."""
    out = []
    for t in pipeline or ():
        typ = t['type'].split('.')[-1]
        if typ.startswith(('Load', 'Pack')):
            continue
        if typ == 'Resize':
            # the interpolation where the config names one (MMPretrain)
            how = (t['interpolation'], ) if 'interpolation' in t else ()
            out.append(('resize', _scale(t['scale'])) + how if
                       t.get('keep_ratio', False) else
                       ('resize_exact', tuple(t['scale'])) + how)
        elif typ == 'RandomResize':
            scale = t['scale']
            if isinstance(scale[0], (list, tuple)):
                scale = tuple(_scale(s) for s in scale)
            else:
                scale = _scale(scale)
            out.append(('random_resize', scale,
                        tuple(t['ratio_range']) if t.get('ratio_range')
                        else None))
        elif typ == 'RandomChoiceResize':
            out.append(('choice_resize',
                        tuple(_scale(s) for s in t['scales'])))
        elif typ == 'RandomChoice':
            out.append(('one_of', tuple(aug_of(sub)
                                        for sub in t['transforms'])))
        elif typ == 'RandomCrop':
            out.append(('crop', tuple(t['crop_size']),
                        t.get('crop_type', t.get('cat_max_ratio'))))
        elif typ == 'RandomFlip':
            out.append(('flip', t.get('prob')))
        elif typ == 'PhotoMetricDistortion':
            out.append(('photometric', ))
        elif typ == 'RandomResizedCrop':
            out.append(('random_resized_crop', t['scale'],
                        t.get('interpolation', 'bilinear')))
        elif typ == 'RandAugment':
            out.append(('rand_augment', t['policies'], t['num_policies'],
                        t['magnitude_level'], t.get('magnitude_std', 0.)))
        elif typ == 'RandomErasing':
            out.append(('random_erasing', t['erase_prob']))
        elif typ == 'ResizeEdge':
            out.append(('resize_' + t.get('edge', 'short'), t['scale'],
                        t.get('interpolation', 'bilinear')))
        elif typ == 'CenterCrop':
            out.append(('center_crop', t['crop_size']))
        else:
            out.append(('unknown', typ))
    return tuple(out)


def no_decay(optim_wrapper):
    """What the optimizer keeps out of weight decay, in neutral terms."""
    pw = _get(optim_wrapper, 'paramwise_cfg') or {}
    out = {'name:' + k for k, v in (pw.get('custom_keys') or {}).items()
           if v.get('decay_mult', 1.) == 0.}
    if pw.get('flat_decay_mult', 1.) == 0.:
        out.add('1d')  # covers norms and biases
    else:
        if pw.get('norm_decay_mult', 1.) == 0.:
            out.add('norm_layers')
        if pw.get('bias_decay_mult', 1.) == 0.:
            out.add('bias')
    return frozenset(out)


def _schedule(cfg, task):
    scheds = cfg.get('param_scheduler') or []
    if isinstance(scheds, dict):
        scheds = [scheds]
    warmup, main = None, None
    for s in scheds:
        typ = s['type']
        if typ == 'LinearLR':
            warmup = ((s['end'], s['start_factor']) if not s.get('by_epoch')
                      else ('epochs', s['end'], s['start_factor']))
        elif typ == 'MultiStepLR':
            main = ('step', tuple(s['milestones']), s.get('gamma', 0.1))
        elif typ == 'PolyLR':
            main = ('poly', s['power'], s.get('eta_min', 0.))
        elif typ == 'CosineAnnealingLR':
            main = ('cosine', s.get('eta_min', 0.))
        else:
            main = ('unknown', typ)
    return warmup, main


def recipe_of(cfg, task=None):
    """Read a resolved config (``mmengine.Config``) into the terms of
    ``OFFICIAL``."""
    scope = cfg.get('default_scope')
    task = task or {'mmdet': 'det', 'mmseg': 'seg',
                    'mmpretrain': 'cls'}[scope]
    ow = cfg.optim_wrapper
    opt = ow.optimizer
    loader = cfg.train_dataloader
    imgs = loader.batch_size
    base = cfg.auto_scale_lr.base_batch_size
    warmup, schedule = _schedule(cfg, task)
    clip = _get(ow, 'clip_grad')
    backbone = cfg.model.backbone
    pw = _get(ow, 'paramwise_cfg') or {}
    r = dict(task=task, drop_path_rate=_drop_path(backbone),
             optimizer=opt.type, lr=opt.lr,
             weight_decay=opt.get('weight_decay', 0.), no_decay=no_decay(ow),
             lr_mult={k: v['lr_mult'] for k, v in
                      (pw.get('custom_keys') or {}).items()
                      if v.get('lr_mult', 1.) != 1.},
             gpus=base / imgs, imgs_per_gpu=imgs,
             fp16=ow.get('type', 'OptimWrapper') == 'AmpOptimWrapper',
             schedule=schedule, warmup=warmup,
             grad_clip=clip.get('max_norm') if clip else None,
             train_aug=aug_of(_train_pipeline(cfg)),
             test_aug=aug_of(cfg.test_dataloader.dataset.pipeline))
    train_cfg = cfg.train_cfg
    if 'max_iters' in train_cfg:
        r['max_iters'] = train_cfg.max_iters
    else:
        r['max_epochs'] = train_cfg.max_epochs
    sampler = _get(loader, 'sampler', {}).get('type', '').split('.')[-1]
    batch_sampler = (_get(loader, 'batch_sampler') or {}).get('type', '')
    r['sampler'] = ('aspect_ratio_groups'
                    if batch_sampler.endswith('AspectRatioBatchSampler') else
                    'infinite' if sampler == 'InfiniteSampler' else
                    'repeated_aug' if sampler == 'RepeatAugSampler' else
                    'random' if _get(loader.sampler, 'shuffle', False) else
                    sampler)
    if task == 'det':
        metric = cfg.test_evaluator.get('metric', 'bbox')
        r['metric'] = tuple([metric] if isinstance(metric, str) else metric)
        rpn = cfg.model.get('rpn_head') or {}
        if 'num_proposals' in rpn:
            r['num_proposals'] = rpn['num_proposals']
        heads = _get(cfg.model.get('roi_head'), 'bbox_head')
        if isinstance(heads, (list, tuple)) and \
                heads[0].get('type') == 'ConvFCBBoxHead':
            h = heads[0]
            r['roi_bbox_head'] = (h['type'], h.get('num_shared_convs', 0),
                                  h.get('num_shared_fcs', 0),
                                  h['loss_bbox']['type'])
    elif task == 'seg':
        r['metric'] = tuple(cfg.test_evaluator.get('iou_metrics', ()))
        r['test_mode'] = cfg.model.test_cfg.get('mode')
        pad = _get(_get(cfg.model.data_preprocessor, 'test_cfg'),
                   'size_divisor')
        if pad:
            r['test_aug'] = r['test_aug'] + (('pad_to_multiple', pad), )
    else:
        r['metric'] = ('accuracy', )
        r['batch_aug'] = tuple(
            (a['type'].split('.')[-1], a['alpha']) for a in
            (_get(cfg.model.get('train_cfg'), 'augments') or ()))
        r['label_smoothing'] = cfg.model.head.loss.get('label_smooth_val')
    return r


def _train_pipeline(cfg):
    ds = cfg.train_dataloader.dataset
    while 'pipeline' not in ds and 'dataset' in ds:  # dataset wrappers
        ds = ds.dataset
    return ds.pipeline


def images_seen(recipe, dataset_len=None):
    """Training images seen: epochs (x the dataset) or iterations x
    batch."""
    batch = recipe['gpus'] * recipe['imgs_per_gpu']
    if 'max_iters' in recipe:
        return ('images', recipe['max_iters'] * batch)
    return ('epochs', recipe['max_epochs'])


def _close(a, b):
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)
        except TypeError:
            return False
    return a == b


def compare(official, ours):
    """Settings where ``ours`` differs from ``official``:
    ``{setting: (official, ours)}``.  The lr is compared per training
    image, the length of training as images seen."""
    diffs = {}
    off_batch = official['gpus'] * official['imgs_per_gpu']
    our_batch = ours['gpus'] * ours['imgs_per_gpu']
    derived = dict(
        lr_per_image=(official['lr'] / off_batch, ours['lr'] / our_batch),
        images_seen=(images_seen(official), images_seen(ours)),
        batch=(off_batch, our_batch))
    for key, (a, b) in derived.items():
        if not _close(a, b):
            diffs[key] = (a, b)
    skip = {'source', 'lr', 'gpus', 'imgs_per_gpu', 'max_iters',
            'max_epochs'}
    for key in sorted(set(official) | set(ours)):
        if key in skip:
            continue
        a, b = official.get(key), ours.get(key)
        if not _close(a, b):
            diffs[key] = (a, b)
    return diffs
