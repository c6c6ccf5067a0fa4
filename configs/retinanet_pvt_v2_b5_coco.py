# RetinaNet + PVTv2-B5, COCO, 1x.
_base_ = ['_base_/det/retinanet_1x.py', '_base_/models/pvt_v2_b5.py']
model = dict(backbone=dict(_delete_=True, **_base_.backbone),
             neck=dict(in_channels=_base_.backbone_channels))
# Memory: 8 GPUs x 1 image, lr halved by the linear scaling rule; on 16 GPUs
# x 1 image `--auto-scale-lr` restores the paper's lr (0.0001) and batch (16).
train_dataloader = dict(batch_size=1)
optim_wrapper = dict(optimizer=dict(lr=5e-05))
auto_scale_lr = dict(base_batch_size=8)
