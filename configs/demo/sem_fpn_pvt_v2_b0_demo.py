# Semantic FPN + PVTv2-B0 on the ADE20K-layout demo data (background + 3
# shape classes), from scratch; used by the end-to-end tests.
_base_ = '../sem_fpn_pvt_v2_b0_ade20k_40k.py'

data_root = 'data/demo/ade'
crop_size = (128, 128)
metainfo = dict(classes=('background', 'rectangle', 'ellipse', 'triangle'))
norm_cfg = dict(type='BN', requires_grad=True)  # SyncBN needs GPUs

model = dict(
    backbone=dict(init_cfg=None, drop_path_rate=0.0),
    data_preprocessor=dict(size=crop_size),
    decode_head=dict(num_classes=4, norm_cfg=norm_cfg))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=crop_size, ratio_range=(0.75, 1.5),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.9),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=crop_size, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo,
               img_suffix='.jpg', seg_map_suffix='.png',
               reduce_zero_label=True)
train_dataloader = dict(
    batch_size=8, num_workers=1, persistent_workers=False,
    dataset=dict(_delete_=True, **dataset, pipeline=train_pipeline,
                 data_prefix=dict(img_path='images/training',
                                  seg_map_path='annotations/training')))
val_dataloader = dict(
    batch_size=8, num_workers=1, persistent_workers=False,
    dataset=dict(_delete_=True, **dataset, pipeline=test_pipeline,
                 data_prefix=dict(img_path='images/validation',
                                  seg_map_path='annotations/validation')))
test_dataloader = val_dataloader

max_iters = 120
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [dict(type='PolyLR', power=0.9, eta_min=0.0, begin=0,
                        end=max_iters, by_epoch=False)]
optim_wrapper = dict(optimizer=dict(lr=1e-3))
auto_scale_lr = dict(base_batch_size=8)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=40, max_keep_ckpts=2))
randomness = dict(seed=0)
