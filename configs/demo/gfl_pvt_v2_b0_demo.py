# GFL on the generated demo data, from scratch, with the small PVTv2-B0 in
# place of the B2 of the config it inherits; used by the end-to-end tests.
_base_ = ['../gfl_pvt_v2_b2_coco_1x.py', '../_base_/demo/coco_demo.py']

data_root = _base_.demo_root
(train_dataloader, val_dataloader, test_dataloader,
 val_evaluator, test_evaluator) = _base_.demo_box_data

model = dict(
    backbone=dict(arch='b0', init_cfg=None, drop_path_rate=0.0),
    neck=dict(in_channels=[32, 64, 160, 256]),  # PVTv2-B0's out_channels
    bbox_head=dict(num_classes=3))

max_epochs = 4
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[3], gamma=0.1),
]
optim_wrapper = dict(optimizer=dict(lr=1e-3))
auto_scale_lr = dict(base_batch_size=8)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=1, max_keep_ckpts=2))
randomness = dict(seed=0)
