# RetinaNet + PVT-Tiny, COCO, 1x.
_base_ = ['_base_/det/retinanet_1x.py', '_base_/models/pvt_v1_tiny.py']
model = dict(backbone=dict(_delete_=True, **_base_.backbone),
             neck=dict(in_channels=_base_.backbone_channels))
