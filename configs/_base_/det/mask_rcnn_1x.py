# Mask R-CNN 1x, the PVT/PVTv2 papers' recipe: 1333x800, AdamW (lr 2e-4,
# weight decay 1e-4), 12 epochs with lr steps at 8 and 11, 8 GPUs x 2 images.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=2e-4, weight_decay=1e-4))
auto_scale_lr = dict(enable=False, base_batch_size=16)

# pvt_mm's reliability hooks (docs/reliability.md): atomic checkpoints, a
# clear stop on a non-finite loss, and per-iteration seeding so that a
# resumed run continues exactly.
default_hooks = dict(checkpoint=dict(type='pvt_mm.AtomicCheckpointHook'))
custom_hooks = [dict(type='pvt_mm.NonFiniteLossHook'),
                dict(type='pvt_mm.IterationSeedHook')]
