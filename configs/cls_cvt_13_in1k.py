# CvT-13 on ImageNet-1k, 300 epochs (DeiT-style recipe), as the official
# experiments/imagenet/cvt/cvt-13-224x224.yaml: 8 GPUs x 256 images at lr
# 2e-3 (2.5e-4 per GPU), weight decay 0.05, no repeated augmentation.
_base_ = ['_base_/cls/in1k_deit_300e.py', '_base_/models/cvt_13.py']
model = dict(backbone=_base_.cls_backbone,
             head=dict(in_channels=_base_.backbone_channels[-1]))
train_dataloader = dict(batch_size=256,
                        sampler=dict(type='DefaultSampler', shuffle=True))
optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [  # warm-up from lr 1e-6, as the base
    dict(_base_.param_scheduler[0], start_factor=1e-6 / 2e-3),
    _base_.param_scheduler[1]]
auto_scale_lr = dict(base_batch_size=2048)
