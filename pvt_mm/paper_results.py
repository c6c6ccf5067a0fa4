"""Published results for the configs in configs/, in the form
``tools/analysis_tools/paper_table.py`` reads: a view of the metafiles
(pvt_mm.model_index), which hold the numbers and their sources.

``PAPER_RESULTS[config_stem]`` maps metric names - as MMDetection /
MMSegmentation / MMPretrain report them, without the ``coco/`` or
``accuracy/`` prefix - to the published value (in %), plus ``source``.
Configs without a published result (e.g. CvT with detection heads; the CvT
paper reports ImageNet only) are absent.
"""
from .model_index import METRICS, models, published

PAPER_RESULTS = {
    name: dict(published(model), source=model['Metadata']['Results Source'])
    for name, model in models().items() if model.get('Results')
}

#: Rows published twice: ``{config: {column: (metrics, source)}}``. The
#: PVTv1 Semantic FPN README lists the mIoU of the released code next to
#: the paper's; PAPER_RESULTS holds the code column (what the configs
#: reproduce), this keeps both (the metafiles' ``Paper Column``).
CODE_VS_PAPER = {
    name: dict(
        code=({k: v for k, v in PAPER_RESULTS[name].items() if k != 'source'},
              PAPER_RESULTS[name]['source']),
        paper=({METRICS[k]: v for k, v in
                model['Metadata']['Paper Column']['Metrics'].items()},
               model['Metadata']['Paper Column']['Source']))
    for name, model in models().items()
    if 'Paper Column' in model.get('Metadata', {})
}

#: Rows published with test-time augmentation: compare runs of
#: ``tools/test.py --tta`` (tools/analysis_tools/paper_table.py says so
#: when a metrics.json was not).
TTA_ROWS = frozenset(name for name, model in models().items()
                     if model.get('Metadata', {}).get('Test-Time Augmentation'))

#: How test.py's metric keys map to the names above, and their scale.
#: COCO and MMPretrain report fractions / percent; MMSegmentation percent.
METRIC_KEYS = {
    'bbox_mAP': (('coco/bbox_mAP', 'bbox_mAP'), 100.0),
    'segm_mAP': (('coco/segm_mAP', 'segm_mAP'), 100.0),
    'mIoU': (('mIoU', ), 1.0),
    'top1': (('accuracy/top1', ), 1.0),
}
