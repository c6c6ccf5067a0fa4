# DETR on the generated demo data, from scratch, with the small PVTv2-B0
# (its stride-32 map) in place of the PVT-Small of the config it inherits,
# a 2+2-layer transformer and 20 queries (the scenes hold 1-3 objects);
# used by the end-to-end tests.
_base_ = ['../detr_pvt_v1_small_coco_50e.py', '../_base_/demo/coco_demo.py']

data_root = _base_.demo_root
train_dataloader = _base_.demo_box_data.train_dataloader
val_dataloader = _base_.demo_box_data.val_dataloader
test_dataloader = val_dataloader
val_evaluator = _base_.demo_box_data.val_evaluator
test_evaluator = val_evaluator

model = dict(
    backbone=dict(_delete_=True, type='pvt_mm.PVTv2', arch='b0',
                  out_indices=(3, ), init_cfg=None, drop_path_rate=0.0),
    neck=dict(in_channels=[256]),  # PVTv2-B0's stride-32 channels
    num_queries=20,
    encoder=dict(num_layers=2),
    decoder=dict(num_layers=2),
    bbox_head=dict(num_classes=3),
    test_cfg=dict(max_per_img=20))

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[10], gamma=0.1),
]
# A from-scratch backbone learns at the full lr here.
optim_wrapper = dict(optimizer=dict(lr=2e-4),
                     paramwise_cfg=dict(custom_keys=dict(
                         backbone=dict(lr_mult=1.0))))
auto_scale_lr = dict(base_batch_size=8)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=1, max_keep_ckpts=2))
randomness = dict(seed=0)
