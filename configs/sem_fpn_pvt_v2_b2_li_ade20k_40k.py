# Semantic FPN + PVTv2-B2-Li, ADE20K, 40k iterations.
_base_ = ['_base_/seg/sem_fpn_40k.py', '_base_/models/pvt_v2_b2_li.py']
model = dict(backbone=dict(_delete_=True, **_base_.backbone),
             neck=dict(in_channels=_base_.backbone_channels))
