# DETR 50 epochs, as the official detr_pvt_s_8x2_50ep_coco.py: MMDetection's
# DETR (6+6 transformer layers, 100 queries) on the stride-32 map only,
# multi-scale training (short side 640-800 in steps of 32, no crop), AdamW
# (lr 1e-4, weight decay 1e-4, backbone lr x0.1), gradients clipped at norm
# 0.1, lr x0.1 at epoch 33, no warm-up, 8 GPUs x 2 images.
_base_ = 'mmdet::detr/detr_r50_8xb2-150e_coco.py'
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomChoiceResize',
         scales=[(1333, s) for s in range(640, 801, 32)], keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
max_epochs = 50
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[33], gamma=0.1)
]
# The recipe's total batch: 8 GPUs x 2 images (`--auto-scale-lr` rescales).
auto_scale_lr = dict(enable=False, base_batch_size=16)

# pvt_mm's reliability hooks (docs/reliability.md): atomic checkpoints, a
# clear stop on a non-finite loss, and per-iteration seeding so that a
# resumed run continues exactly.
default_hooks = dict(checkpoint=dict(type='pvt_mm.AtomicCheckpointHook'))
custom_hooks = [dict(type='pvt_mm.NonFiniteLossHook'),
                dict(type='pvt_mm.IterationSeedHook')]
