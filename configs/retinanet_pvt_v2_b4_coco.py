# RetinaNet + PVTv2-B4, COCO, 1x.
_base_ = ['_base_/det/retinanet_1x.py', '_base_/models/pvt_v2_b4.py']
model = dict(backbone=dict(_delete_=True, **_base_.backbone),
             neck=dict(in_channels=_base_.backbone_channels))
# As the official retinanet_pvt_v2_b4_fpn_1x_coco.py: 8 GPUs x 1 image at
# lr 0.0001 / 1.4 (`auto_scale_lr` knows the batch is 8).
train_dataloader = dict(batch_size=1)
optim_wrapper = dict(optimizer=dict(lr=0.0001 / 1.4))
auto_scale_lr = dict(base_batch_size=8)
