# Sparse R-CNN on the generated demo data, from scratch, with the small
# PVTv2-B0 in place of the B2-Li of the config it inherits and 100
# proposals (the scenes hold 1-3 objects); used by the end-to-end tests.
_base_ = ['../sparse_rcnn_pvt_v2_b2_li_coco_3x_ms.py',
          '../_base_/demo/coco_demo.py']

data_root = _base_.demo_root
train_dataloader = _base_.demo_box_data.train_dataloader
val_dataloader = _base_.demo_box_data.val_dataloader
test_dataloader = val_dataloader
val_evaluator = _base_.demo_box_data.val_evaluator
test_evaluator = val_evaluator

num_proposals = 100
model = dict(
    backbone=dict(arch='b0', init_cfg=None, drop_path_rate=0.0),
    neck=dict(in_channels=[32, 64, 160, 256]),  # PVTv2-B0's out_channels
    rpn_head=dict(num_proposals=num_proposals),
    roi_head=dict(bbox_head=[dict(head, num_classes=3)
                             for head in _base_.model.roi_head.bbox_head]),
    test_cfg=dict(rcnn=dict(max_per_img=num_proposals)))

max_epochs = 6
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[5], gamma=0.1),
]
optim_wrapper = dict(optimizer=dict(lr=2e-4))  # a from-scratch lr
auto_scale_lr = dict(base_batch_size=8)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=1, max_keep_ckpts=2))
randomness = dict(seed=0)
