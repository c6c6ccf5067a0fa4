# Sparse R-CNN + PVTv2-B2, COCO, 3x, 300 proposals, crop + multi-scale 480-800.
_base_ = ['_base_/det/sparse_rcnn_3x_ms.py', '_base_/models/pvt_v2_b2.py']
model = dict(backbone=dict(_delete_=True, **_base_.backbone),
             neck=dict(in_channels=_base_.backbone_channels))
# As the official sparse_rcnn_pvt_v2_b2_fpn_300_proposals_crop_mstrain_480-
# 800_3x_coco.py: 8 GPUs x 1 image at lr 2.5e-5 / 1.4.
train_dataloader = dict(batch_size=1)
optim_wrapper = dict(optimizer=dict(lr=2.5e-5 / 1.4))
auto_scale_lr = dict(base_batch_size=8)
