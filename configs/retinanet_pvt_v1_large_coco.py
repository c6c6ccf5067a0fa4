# RetinaNet + PVT-Large, COCO, 1x.
_base_ = ['_base_/det/retinanet_1x.py', '_base_/models/pvt_v1_large.py']
model = dict(backbone=dict(_delete_=True, **_base_.backbone),
             neck=dict(in_channels=_base_.backbone_channels))
# The official detection/pvt.py builds PVT-Medium / -Large without drop path.
model['backbone']['drop_path_rate'] = 0.0
# As the official retinanet_pvt_l_fpn_1x_coco.py: 8 GPUs x 2 images in fp16.
optim_wrapper = dict(type='AmpOptimWrapper')
