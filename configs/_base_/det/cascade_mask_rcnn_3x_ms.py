# Cascade Mask R-CNN 3x multi-scale, as the official
# cascade_mask_rcnn_pvt_v2_*_fpn_3x_mstrain_fp16.py: MMDetection's Cascade
# Mask R-CNN with the "4conv1fc" box heads (4 shared convs with SyncBN, one
# fc, class-specific GIoU regression on decoded boxes) and recipe_3x_ms.py,
# in fp16.
_base_ = ['mmdet::cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py',
          'recipe_3x_ms.py']


def _box_head(target_stds):
    return dict(
        type='ConvFCBBoxHead', num_shared_convs=4, num_shared_fcs=1,
        in_channels=256, conv_out_channels=256, fc_out_channels=1024,
        roi_feat_size=7, num_classes=80,
        bbox_coder=dict(type='DeltaXYWHBBoxCoder',
                        target_means=[0., 0., 0., 0.],
                        target_stds=target_stds),
        reg_class_agnostic=False, reg_decoded_bbox=True,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False,
                      loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=10.0))


model = dict(roi_head=dict(bbox_head=[
    _box_head(stds) for stds in ([0.1, 0.1, 0.2, 0.2],
                                 [0.05, 0.05, 0.1, 0.1],
                                 [0.033, 0.033, 0.067, 0.067])]))
train_dataloader = dict(dataset=dict(pipeline=_base_.ms_crop_mask_pipeline))
train_cfg = _base_.ms3x_train_cfg
param_scheduler = _base_.ms3x_param_scheduler
optim_wrapper = dict(_delete_=True, **_base_.ms3x_amp_optim_wrapper)
# The recipe's total batch: 8 GPUs x 2 images (`--auto-scale-lr` rescales).
auto_scale_lr = dict(enable=False, base_batch_size=16)

# pvt_mm's reliability hooks (docs/reliability.md): atomic checkpoints, a
# clear stop on a non-finite loss, and per-iteration seeding so that a
# resumed run continues exactly.
default_hooks = dict(checkpoint=dict(type='pvt_mm.AtomicCheckpointHook'))
custom_hooks = [dict(type='pvt_mm.NonFiniteLossHook'),
                dict(type='pvt_mm.IterationSeedHook')]
