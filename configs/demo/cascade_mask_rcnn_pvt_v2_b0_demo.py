# Cascade Mask R-CNN (4conv1fc GIoU heads) on the generated demo data, from
# scratch, with the small PVTv2-B0 in place of the B2 of the config it
# inherits; used by the end-to-end tests. To train in minutes on a CPU the
# heads keep their structure at a quarter of the width (FPN 128 channels,
# head convs 64, fc 256) and see 100 proposals / 64 sampled RoIs per image
# (the scenes hold 1-3 objects) instead of 2000 / 512.
_base_ = ['../cascade_mask_rcnn_pvt_v2_b2_coco_3x_ms.py',
          '../_base_/demo/coco_demo.py']

data_root = _base_.demo_root
(train_dataloader, val_dataloader, test_dataloader,
 val_evaluator, test_evaluator) = _base_.demo_mask_data

width = 128
model = dict(
    backbone=dict(arch='b0', init_cfg=None, drop_path_rate=0.0),
    neck=dict(in_channels=[32, 64, 160, 256],  # PVTv2-B0's out_channels
              out_channels=width),
    rpn_head=dict(in_channels=width, feat_channels=width),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=[dict(head, num_classes=3, in_channels=width,
                        conv_out_channels=64, fc_out_channels=256)
                   for head in _base_.model.roi_head.bbox_head],
        mask_roi_extractor=dict(out_channels=width),
        mask_head=dict(num_classes=3, in_channels=width,
                       conv_out_channels=64)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=200, max_per_img=100),
        rcnn=[dict(stage, sampler=dict(stage['sampler'], num=64))
              for stage in _base_.model.train_cfg.rcnn]),
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=100)))

max_epochs = 4
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[3], gamma=0.1),
]
# fp32 on CPU; a from-scratch lr.
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(lr=1e-3),
                     clip_grad=dict(max_norm=10.0))
auto_scale_lr = dict(base_batch_size=8)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=1, max_keep_ckpts=2))
randomness = dict(seed=0)
