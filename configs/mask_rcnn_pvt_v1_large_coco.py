# Mask R-CNN + PVT-Large, COCO, 1x.
_base_ = ['_base_/det/mask_rcnn_1x.py', '_base_/models/pvt_v1_large.py']
model = dict(backbone=dict(_delete_=True, **_base_.backbone),
             neck=dict(in_channels=_base_.backbone_channels))
# The official detection/pvt.py builds PVT-Medium / -Large without drop path.
model['backbone']['drop_path_rate'] = 0.0
# As the official mask_rcnn_pvt_l_fpn_1x_coco.py: 8 GPUs x 1 image at
# lr 0.0002 / 1.4 (`auto_scale_lr` knows the batch is 8).
train_dataloader = dict(batch_size=1)
optim_wrapper = dict(optimizer=dict(lr=0.0002 / 1.4))
auto_scale_lr = dict(base_batch_size=8)
