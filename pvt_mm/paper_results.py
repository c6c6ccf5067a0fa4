"""Published results for the configs in configs/, as data for
``tools/analysis_tools/paper_table.py`` and docs/model_zoo.md.

``PAPER_RESULTS[config_stem]`` maps metric names - as MMDetection /
MMSegmentation / MMPretrain report them, without the ``coco/`` or
``accuracy/`` prefix - to the published value (in %), plus ``source``.
Configs without a published result (e.g. CvT with detection heads; the CvT
paper reports ImageNet only) are absent.
"""
V2_DET = ('PVTv2 official detection README, '
          'https://github.com/whai362/PVT/blob/v2/detection/README.md')
V1_DET = V2_DET + ' (PVTv1 table)'
V1_SEG = ('PVT official segmentation README (mIoU "paper" column), '
          'https://github.com/whai362/PVT/blob/v2/segmentation/README.md')
V1_SEG_CODE = ('PVT official segmentation README (mIoU "code" column: the '
               'official configs, which ours reproduce), '
               'https://github.com/whai362/PVT/blob/v2/segmentation/README.md')
V2_SEG = 'PVTv2 paper, arXiv:2106.13797, Table 5 (Semantic FPN, ADE20K val)'
V1_PAPER_DET = ('PVTv1 paper (ICCV 2021, arXiv:2102.12122), COCO val2017, '
                'Table 3 (RetinaNet) / Table 4 (Mask R-CNN), "3x + MS" '
                'columns (no official config)')
CLS = ('PVT official classification README, '
       'https://github.com/whai362/PVT/blob/v2/classification/README.md')
CVT = 'CvT paper, arXiv:2103.15808, Table 3'


def _box(ap, source):
    return dict(bbox_mAP=ap, source=source)


def _mask(box_ap, mask_ap, source):
    return dict(bbox_mAP=box_ap, segm_mAP=mask_ap, source=source)


PAPER_RESULTS = {
    # RetinaNet 1x (COCO val2017 box AP)
    'retinanet_pvt_v1_tiny_coco': _box(36.7, V1_DET),
    'retinanet_pvt_v1_small_coco': _box(40.4, V1_DET),
    'retinanet_pvt_v1_medium_coco': _box(41.9, V1_DET),
    'retinanet_pvt_v1_large_coco': _box(42.6, V1_DET),
    'retinanet_pvt_v2_b0_coco': _box(37.2, V2_DET),
    'retinanet_pvt_v2_b1_coco': _box(41.2, V2_DET),
    'retinanet_pvt_v2_b2_coco': _box(44.6, V2_DET),
    'retinanet_pvt_v2_b2_li_coco': _box(43.6, V2_DET),
    'retinanet_pvt_v2_b3_coco': _box(45.9, V2_DET),
    'retinanet_pvt_v2_b4_coco': _box(46.1, V2_DET),
    'retinanet_pvt_v2_b5_coco': _box(46.2, V2_DET),
    # Mask R-CNN 1x (box AP, mask AP)
    'mask_rcnn_pvt_v1_tiny_coco': _mask(36.7, 35.1, V1_DET),
    'mask_rcnn_pvt_v1_small_coco': _mask(40.4, 37.8, V1_DET),
    'mask_rcnn_pvt_v1_medium_coco': _mask(42.0, 39.0, V1_DET),
    'mask_rcnn_pvt_v1_large_coco': _mask(42.9, 39.5, V1_DET),
    'mask_rcnn_pvt_v2_b0_coco': _mask(38.2, 36.2, V2_DET),
    'mask_rcnn_pvt_v2_b1_coco': _mask(41.8, 38.8, V2_DET),
    'mask_rcnn_pvt_v2_b2_coco': _mask(45.3, 41.2, V2_DET),
    'mask_rcnn_pvt_v2_b2_li_coco': _mask(44.1, 40.5, V2_DET),
    'mask_rcnn_pvt_v2_b3_coco': _mask(47.0, 42.5, V2_DET),
    'mask_rcnn_pvt_v2_b4_coco': _mask(47.5, 42.7, V2_DET),
    'mask_rcnn_pvt_v2_b5_coco': _mask(47.4, 42.5, V2_DET),
    'retinanet_pvt_v1_small_coco_640': _box(38.7, V1_DET),
    'detr_pvt_v1_small_coco_50e': _box(34.7, V1_DET),
    # PVTv1 paper: 3x schedule + multi-scale training (shorter side drawn
    # from [640, 800], Sec. 5.2), checked against Tables 3-4 of
    # arXiv:2102.12122v2. (whai362/PVT#67 quotes 42.2 and 43.2 for
    # "PVT_small and PVT_large"; in the paper 43.2 is PVT-Medium's.)
    'retinanet_pvt_v1_tiny_coco_3x_ms': _box(39.4, V1_PAPER_DET),
    'retinanet_pvt_v1_small_coco_3x_ms': _box(42.2, V1_PAPER_DET),
    'retinanet_pvt_v1_medium_coco_3x_ms': _box(43.2, V1_PAPER_DET),
    'retinanet_pvt_v1_large_coco_3x_ms': _box(43.4, V1_PAPER_DET),
    'mask_rcnn_pvt_v1_tiny_coco_3x_ms': _mask(39.8, 37.4, V1_PAPER_DET),
    'mask_rcnn_pvt_v1_small_coco_3x_ms': _mask(43.0, 39.9, V1_PAPER_DET),
    'mask_rcnn_pvt_v1_medium_coco_3x_ms': _mask(44.2, 40.5, V1_PAPER_DET),
    'mask_rcnn_pvt_v1_large_coco_3x_ms': _mask(44.5, 40.7, V1_PAPER_DET),
    # PVTv2 3x multi-scale
    'mask_rcnn_pvt_v2_b0_coco_3x_ms': _mask(41.6, 38.2, V2_DET),
    'mask_rcnn_pvt_v2_b2_coco_3x_ms': _mask(47.8, 43.1, V2_DET),
    'gfl_pvt_v2_b2_coco_3x_ms': _box(50.2, V2_DET),
    'gfl_pvt_v2_b2_li_coco_3x_ms': _box(49.2, V2_DET),
    'cascade_mask_rcnn_pvt_v2_b2_coco_3x_ms': _mask(51.1, 44.4, V2_DET),
    'cascade_mask_rcnn_pvt_v2_b2_li_coco_3x_ms': _mask(50.9, 44.0, V2_DET),
    'atss_pvt_v2_b2_coco_3x_ms': _box(49.9, V2_DET),
    'atss_pvt_v2_b2_li_coco_3x_ms': _box(48.9, V2_DET),
    'sparse_rcnn_pvt_v2_b2_coco_3x_ms': _box(50.1, V2_DET),
    'sparse_rcnn_pvt_v2_b2_li_coco_3x_ms': _box(48.9, V2_DET),
    # Semantic FPN, ADE20K val, 40k iterations (mIoU)
    # PVTv1: the README's "code" column (what the official configs, and
    # ours, train) is the reference; CODE_VS_PAPER keeps the paper's.
    'sem_fpn_pvt_v1_tiny_ade20k_40k': dict(mIoU=36.6, source=V1_SEG_CODE),
    'sem_fpn_pvt_v1_small_ade20k_40k': dict(mIoU=41.9, source=V1_SEG_CODE),
    'sem_fpn_pvt_v1_medium_ade20k_40k': dict(mIoU=43.5, source=V1_SEG_CODE),
    'sem_fpn_pvt_v1_large_ade20k_40k': dict(mIoU=43.5, source=V1_SEG_CODE),
    'sem_fpn_pvt_v2_b0_ade20k_40k': dict(mIoU=37.2, source=V2_SEG),
    'sem_fpn_pvt_v2_b1_ade20k_40k': dict(mIoU=42.5, source=V2_SEG),
    'sem_fpn_pvt_v2_b2_ade20k_40k': dict(mIoU=45.2, source=V2_SEG),
    # PVTv1 paper, Table 5, "PVT-Large*": 320k iterations (at batch 16)
    # and multi-scale + flip testing (tools/test.py --tta; TTA_ROWS).
    'sem_fpn_pvt_v1_large_ade20k_160k_tta': dict(
        mIoU=44.8, source='PVTv1 paper (arXiv:2102.12122), Table 5, '
        '"PVT-Large*" (320k iterations, multi-scale flip test; no official '
        'config)'),
    # PVTv1 paper, Table 7: PVT-Small + Trans2Seg, 40k iterations,
    # single-scale test (no official config; pvt_mm.Trans2SegHead).
    'trans2seg_pvt_v1_small_ade20k_40k': dict(
        mIoU=42.6, source='PVTv1 paper (arXiv:2102.12122), Table 7, '
        '"PVT-Small+Trans2Seg" (no official config)'),
    # Not in the PVTv2-Seg README (which has the B2-Li config but no row);
    # the PVTv2 paper's Table 5 has it.
    'sem_fpn_pvt_v2_b2_li_ade20k_40k': dict(mIoU=45.1, source=V2_SEG),
    'sem_fpn_pvt_v2_b3_ade20k_40k': dict(mIoU=47.3, source=V2_SEG),
    'sem_fpn_pvt_v2_b4_ade20k_40k': dict(mIoU=47.9, source=V2_SEG),
    'sem_fpn_pvt_v2_b5_ade20k_40k': dict(mIoU=48.7, source=V2_SEG),
    # ImageNet-1k top-1 (224x224)
    'cls_pvt_v1_tiny_in1k': dict(top1=75.1, source=CLS),
    'cls_pvt_v1_small_in1k': dict(top1=79.8, source=CLS),
    'cls_pvt_v1_medium_in1k': dict(top1=81.2, source=CLS),
    'cls_pvt_v1_large_in1k': dict(top1=81.7, source=CLS),
    'cls_pvt_v2_b0_in1k': dict(top1=70.5, source=CLS),
    'cls_pvt_v2_b1_in1k': dict(top1=78.7, source=CLS),
    'cls_pvt_v2_b2_in1k': dict(top1=82.0, source=CLS),
    'cls_pvt_v2_b2_li_in1k': dict(top1=82.1, source=CLS),
    'cls_pvt_v2_b3_in1k': dict(top1=83.1, source=CLS),
    'cls_pvt_v2_b4_in1k': dict(top1=83.6, source=CLS),
    'cls_pvt_v2_b5_in1k': dict(top1=83.8, source=CLS),
    'cls_cvt_13_in1k': dict(top1=81.6, source=CVT),
    'cls_cvt_21_in1k': dict(top1=82.5, source=CVT),
    'cls_cvt_13_384_in1k': dict(top1=83.0, source=CVT + ' (384x384 row)'),
    'cls_cvt_21_384_in1k': dict(top1=83.3, source=CVT + ' (384x384 row)'),
    'cls_cvt_w24_in1k': dict(
        top1=87.7, source=CVT + ' (ImageNet-22k pre-training, 384x384 '
        'fine-tuning: not this config\'s from-scratch recipe)'),
}

#: Rows published twice: ``{config: {column: (metrics, source)}}``.  The
#: PVTv1 Semantic FPN README lists the mIoU of the released code next to
#: the paper's; PAPER_RESULTS holds the code column (what the configs
#: reproduce), this keeps both.
CODE_VS_PAPER = {
    f'sem_fpn_pvt_v1_{arch}_ade20k_40k': dict(
        code=(dict(mIoU=code), V1_SEG_CODE), paper=(dict(mIoU=paper), V1_SEG))
    for arch, code, paper in (('tiny', 36.6, 35.7), ('small', 41.9, 39.8),
                              ('medium', 43.5, 41.6), ('large', 43.5, 42.1))
}

#: Rows published with test-time augmentation: compare runs of
#: ``tools/test.py --tta`` (tools/analysis_tools/paper_table.py says so
#: when a metrics.json was not).
TTA_ROWS = frozenset({'sem_fpn_pvt_v1_large_ade20k_160k_tta'})

#: How test.py's metric keys map to the names above, and their scale.
#: COCO and MMPretrain report fractions / percent; MMSegmentation percent.
METRIC_KEYS = {
    'bbox_mAP': (('coco/bbox_mAP', 'bbox_mAP'), 100.0),
    'segm_mAP': (('coco/segm_mAP', 'segm_mAP'), 100.0),
    'mIoU': (('mIoU', ), 1.0),
    'top1': (('accuracy/top1', ), 1.0),
}
