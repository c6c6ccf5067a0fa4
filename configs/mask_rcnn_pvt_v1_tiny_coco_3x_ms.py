# Mask R-CNN + PVT-Tiny, COCO, 3x multi-scale (PVTv1 paper; no official config).
_base_ = ['_base_/det/mask_rcnn_v1_3x_ms.py', '_base_/models/pvt_v1_tiny.py']
model = dict(backbone=dict(_delete_=True, **_base_.backbone),
             neck=dict(in_channels=_base_.backbone_channels))
