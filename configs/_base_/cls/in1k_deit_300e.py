# ImageNet-1k classification, the DeiT-style recipe the PVT/PVTv2 papers
# train with: 224x224 RandomResizedCrop + RandAugment + random erasing,
# Mixup/CutMix, label smoothing 0.1, AdamW (lr 1e-3 = 5e-4 x 1024 / 512,
# weight decay 0.05, none on norms, biases and position embeddings), cosine
# schedule with 20 warm-up epochs, 300 epochs, 8 GPUs x 128 images.
# Data, schedule and runtime come from MMPretrain's own bases.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]
data_root = 'data/imagenet'
train_dataloader = dict(batch_size=128, dataset=dict(data_root=data_root))
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
    paramwise_cfg=dict(custom_keys={'pos_embed': dict(decay_mult=0.0),
                                    'cls_token': dict(decay_mult=0.0)}))
# The recipe's total batch (8 x 128); `--auto-scale-lr` rescales the lr.
auto_scale_lr = dict(enable=False, base_batch_size=1024)

# pvt_mm's reliability hooks (docs/reliability.md): atomic checkpoints, a
# clear stop on a non-finite loss, and per-iteration seeding so that a
# resumed run continues exactly.
default_hooks = dict(checkpoint=dict(type='pvt_mm.AtomicCheckpointHook'))
custom_hooks = [dict(type='pvt_mm.NonFiniteLossHook'),
                dict(type='pvt_mm.IterationSeedHook')]
