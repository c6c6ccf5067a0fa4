# Sparse R-CNN on the generated demo data, from scratch, with the small
# PVTv2-B0 in place of the B2-Li of the config it inherits; used by the
# end-to-end tests. To train in minutes on a CPU the six dynamic-instance
# stages keep their structure at half the width (FPN / proposal features
# 128 channels, FFN 512) and see 30 proposals per image (the scenes hold
# 1-3 objects) instead of 300: at full width and 100 proposals one
# iteration took 20 s on 2 shared cores, ~60% of it in the heads' matmuls.
_base_ = ['../sparse_rcnn_pvt_v2_b2_li_coco_3x_ms.py',
          '../_base_/demo/coco_demo.py']

data_root = _base_.demo_root
(train_dataloader, val_dataloader, test_dataloader,
 val_evaluator, test_evaluator) = _base_.demo_box_data

num_proposals = 30
width = 128
model = dict(
    backbone=dict(arch='b0', init_cfg=None, drop_path_rate=0.0),
    neck=dict(in_channels=[32, 64, 160, 256],  # PVTv2-B0's out_channels
              out_channels=width),
    rpn_head=dict(num_proposals=num_proposals,
                  proposal_feature_channel=width),
    roi_head=dict(
        proposal_feature_channel=width,
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=[dict(head, num_classes=3, in_channels=width,
                        feedforward_channels=512,
                        dynamic_conv_cfg=dict(head['dynamic_conv_cfg'],
                                              in_channels=width,
                                              out_channels=width))
                   for head in _base_.model.roi_head.bbox_head]),
    test_cfg=dict(rcnn=dict(max_per_img=num_proposals)))

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[10], gamma=0.1),
]
# A from-scratch lr (measured: 6 epochs at 2e-4 reached box mAP 0.034,
# 12 epochs at 4e-4 0.119).
optim_wrapper = dict(optimizer=dict(lr=4e-4))
auto_scale_lr = dict(base_batch_size=8)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=1, max_keep_ckpts=2))
randomness = dict(seed=0)
