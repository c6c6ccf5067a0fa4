# DETR + PVT-Small, COCO, 50 epochs. As the official pvt_small_f4, the
# backbone returns its stride-32 map only.
_base_ = ['_base_/det/detr_50e.py', '_base_/models/pvt_v1_small.py']
model = dict(backbone=dict(_delete_=True, **_base_.backbone,
                           out_indices=(3, )),
             neck=dict(in_channels=_base_.backbone_channels[-1:]))
