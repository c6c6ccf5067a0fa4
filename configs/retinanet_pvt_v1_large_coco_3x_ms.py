# RetinaNet + PVT-Large, COCO, 3x multi-scale (PVTv1 paper; no official config).
_base_ = ['_base_/det/retinanet_3x_ms.py', '_base_/models/pvt_v1_large.py']
model = dict(backbone=dict(_delete_=True, **_base_.backbone),
             neck=dict(in_channels=_base_.backbone_channels))
# The official detection/pvt.py builds PVT-Medium / -Large without drop path.
model['backbone']['drop_path_rate'] = 0.0
