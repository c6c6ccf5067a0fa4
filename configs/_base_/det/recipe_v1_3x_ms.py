# The PVTv1 paper's "3x + MS" detection schedule (RetinaNet and Mask R-CNN
# rows of its COCO tables), applied to the 1x bases (retinanet_3x_ms.py,
# mask_rcnn_v1_3x_ms.py): the 36-epoch schedule of recipe_3x_ms.py (lr
# steps at 27 and 33) with multi-scale training, the short side drawn from
# [640, 800] (long side at most 1333). The official repository has no
# config for these rows; the optimizer and batch stay those of the official
# 1x code.
_base_ = 'recipe_3x_ms.py'


def _ms640_pipeline(with_mask):
    return [
        dict(type='LoadImageFromFile', backend_args=None),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=with_mask),
        dict(type='RandomResize', scale=[(1333, 640), (1333, 800)],
             keep_ratio=True),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackDetInputs'),
    ]


ms640_box_pipeline = _ms640_pipeline(with_mask=False)
ms640_mask_pipeline = _ms640_pipeline(with_mask=True)
