# Mask R-CNN + PVTv2-B4, COCO, 1x.
_base_ = ['_base_/det/mask_rcnn_1x.py', '_base_/models/pvt_v2_b4.py']
model = dict(backbone=dict(_delete_=True, **_base_.backbone),
             neck=dict(in_channels=_base_.backbone_channels))
# Memory: 8 GPUs x 1 image, lr halved by the linear scaling rule; on 16 GPUs
# x 1 image `--auto-scale-lr` restores the paper's lr (0.0002) and batch (16).
train_dataloader = dict(batch_size=1)
optim_wrapper = dict(optimizer=dict(lr=0.0001))
auto_scale_lr = dict(base_batch_size=8)
