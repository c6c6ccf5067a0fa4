# ImageNet-1k classification, the DeiT-style recipe of the official PVT
# classification code (classification/main.py defaults): 224x224
# RandomResizedCrop + RandAugment + random erasing, Mixup/CutMix, label
# smoothing 0.1, repeated augmentation (3 repeats), AdamW (lr 1e-3 =
# 5e-4 x 1024 / 512, weight decay 0.05, none on norms, biases and position
# embeddings), 5 linear warm-up epochs from lr 1e-6, cosine to 1e-5,
# 300 epochs, native AMP, 8 GPUs x 128 images, no gradient clipping (the
# per-model configs of PVT-M/L and PVTv2-B3/4/5 clip at 1.0).
# Data, schedule and runtime come from MMPretrain's own bases.
#
# Known small differences (docs/model_zoo.md): timm steps the cosine
# schedule once per epoch and does not shift it by the warm-up; MMPretrain
# steps it per iteration and starts it after the warm-up.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]
data_root = 'data/imagenet'
train_dataloader = dict(batch_size=128, dataset=dict(data_root=data_root),
                        sampler=dict(type='RepeatAugSampler', shuffle=True))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader

model = dict(
    type='ImageClassifier',
    # backbone: set by each config (its backbone base's cls_backbone)
    neck=None,  # pvt_mm backbones already return the pooled vector
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=None,  # set by each config: backbone_channels[-1]
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                  mode='original')),
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=.02),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
    ],
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]))
optim_wrapper = dict(
    type='AmpOptimWrapper',
    # timm's add_weight_decay: no decay on 1-D parameters (norms, biases)
    # and on the model's no_weight_decay() names (position embeddings,
    # class token); MMPretrain's Swin keys match no parameter here.
    paramwise_cfg=dict(
        _delete_=True, norm_decay_mult=0.0, bias_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys={'pos_embed': dict(decay_mult=0.0),
                     'cls_token': dict(decay_mult=0.0)}))
warmup_epochs = 5
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0,
         end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True,
         begin=warmup_epochs, end=300),
]
# The recipe's total batch (8 x 128); `--auto-scale-lr` rescales the lr.
auto_scale_lr = dict(enable=False, base_batch_size=1024)

# pvt_mm's reliability hooks (docs/reliability.md): atomic checkpoints, a
# clear stop on a non-finite loss, and per-iteration seeding so that a
# resumed run continues exactly.
default_hooks = dict(checkpoint=dict(type='pvt_mm.AtomicCheckpointHook'))
custom_hooks = [dict(type='pvt_mm.NonFiniteLossHook'),
                dict(type='pvt_mm.IterationSeedHook')]
