# ATSS 3x multi-scale, as the official atss_pvt_v2_*_fpn_3x_mstrain_fp16.py:
# MMDetection's ATSS (GIoU loss, centerness, FPN from stride 8 with extra
# levels on the outputs) with recipe_3x_ms.py, in fp16.
_base_ = ['mmdet::atss/atss_r50_fpn_1x_coco.py', 'recipe_3x_ms.py']
# mmcv 2.1's CUDA focal-loss kernel has no bf16: the same loss with its
# inputs in fp32 under autocast (pvt_mm/losses.py), so bf16 AMP trains too
# (fp32 runs are unchanged; fp16 ones compute it in fp32, as MMDetection 2's
# heads did for the official runs).
model = dict(bbox_head=dict(loss_cls=dict(type='pvt_mm.FP32FocalLoss')))
train_dataloader = dict(dataset=dict(pipeline=_base_.ms_crop_box_pipeline))
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
