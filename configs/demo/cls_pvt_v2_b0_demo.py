# PVTv2-B0 classifier on the ImageNet-style demo folders (3 shape classes,
# 64x64 images), from scratch; used by the end-to-end tests.
_base_ = '../cls_pvt_v2_b0_in1k.py'

data_root = 'data/demo/imagenet'
num_classes = 3
data_preprocessor = dict(num_classes=num_classes)
model = dict(head=dict(num_classes=num_classes),
             backbone=dict(drop_path_rate=0.0))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=64, crop_ratio_range=(0.6, 1.0)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(64, 64)),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=16, num_workers=1, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root,
                 data_prefix='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16, num_workers=1, persistent_workers=False,
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root,
                 data_prefix='val', pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(topk=(1, ))  # only 3 classes
test_evaluator = val_evaluator

max_epochs = 4
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0,
         end=max_epochs),
]
optim_wrapper = dict(type='OptimWrapper')  # fp32 on CPU
auto_scale_lr = dict(base_batch_size=16)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=1, max_keep_ckpts=2))
randomness = dict(seed=0)
