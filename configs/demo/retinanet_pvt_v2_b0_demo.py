# RetinaNet + PVTv2-B0 on the generated demo data (tools/misc/make_demo_data.py):
# 128x128 scenes of 3 shape classes, trained from scratch in a few minutes
# on 2 CPU cores (`make demo`). Everything not set here is the real COCO
# config it inherits.
_base_ = ['../retinanet_pvt_v2_b0_coco.py', '../_base_/demo/coco_demo.py']

data_root = _base_.demo_root
(train_dataloader, val_dataloader, test_dataloader,
 val_evaluator, test_evaluator) = _base_.demo_box_data

model = dict(
    backbone=dict(init_cfg=None, drop_path_rate=0.0),  # no pretrained weights
    # A lighter FPN and head than the paper's (256 channels, 4 convs) keep
    # the demo within minutes on a CPU.
    neck=dict(out_channels=128),
    bbox_head=dict(num_classes=3, in_channels=128, feat_channels=128,
                   stacked_convs=2))

max_epochs = 6
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[5], gamma=0.1),
]
optim_wrapper = dict(optimizer=dict(lr=1e-3), clip_grad=dict(max_norm=10.0))
auto_scale_lr = dict(base_batch_size=8)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=1, max_keep_ckpts=2))
randomness = dict(seed=0)
