# Cascade Mask R-CNN + PVTv2-B2, COCO, 3x multi-scale (fp16).
_base_ = ['_base_/det/cascade_mask_rcnn_3x_ms.py',
          '_base_/models/pvt_v2_b2.py']
model = dict(backbone=dict(_delete_=True, **_base_.backbone),
             neck=dict(in_channels=_base_.backbone_channels))
