# Mask R-CNN + PVTv2-B0 on the generated demo data (instance masks), from
# scratch; used by the end-to-end tests. See retinanet_pvt_v2_b0_demo.py.
_base_ = ['../mask_rcnn_pvt_v2_b0_coco.py', '../_base_/demo/coco_demo.py']

data_root = _base_.demo_root
(train_dataloader, val_dataloader, test_dataloader,
 val_evaluator, test_evaluator) = _base_.demo_mask_data

model = dict(
    backbone=dict(init_cfg=None, drop_path_rate=0.0),
    roi_head=dict(bbox_head=dict(num_classes=3),
                  mask_head=dict(num_classes=3)))

max_epochs = 4
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[3], gamma=0.1),
]
auto_scale_lr = dict(base_batch_size=8)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=1, max_keep_ckpts=2))
randomness = dict(seed=0)
