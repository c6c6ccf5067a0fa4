# RetinaNet 1x, the PVT/PVTv2 papers' recipe: 1333x800, AdamW (lr 1e-4,
# weight decay 1e-4), 12 epochs with lr steps at 8 and 11, 8 GPUs x 2 images.
# Model, data, schedule and runtime come from MMDetection's own bases.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
# mmcv 2.1's CUDA focal-loss kernel has no bf16: the same loss with its
# inputs in fp32 under autocast (pvt_mm/losses.py), so bf16 AMP trains too
# (fp32 runs are unchanged; fp16 ones compute it in fp32, as MMDetection 2's
# heads did for the official runs).
model = dict(bbox_head=dict(loss_cls=dict(type='pvt_mm.FP32FocalLoss')))
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, weight_decay=1e-4))
# The recipe's total batch: 8 GPUs x 2 images (`--auto-scale-lr` rescales).
auto_scale_lr = dict(enable=False, base_batch_size=16)

# pvt_mm's reliability hooks (docs/reliability.md): atomic checkpoints, a
# clear stop on a non-finite loss, and per-iteration seeding so that a
# resumed run continues exactly.
default_hooks = dict(checkpoint=dict(type='pvt_mm.AtomicCheckpointHook'))
custom_hooks = [dict(type='pvt_mm.NonFiniteLossHook'),
                dict(type='pvt_mm.IterationSeedHook')]
