# Sparse R-CNN + PVTv2-B2-Li, COCO, 3x, 300 proposals, crop + multi-scale 480-800.
_base_ = ['_base_/det/sparse_rcnn_3x_ms.py', '_base_/models/pvt_v2_b2_li.py']
model = dict(backbone=dict(_delete_=True, **_base_.backbone),
             neck=dict(in_channels=_base_.backbone_channels))
