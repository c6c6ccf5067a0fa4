# CvT-21 on ImageNet-1k, 300 epochs (DeiT-style recipe), as the official
# experiments/imagenet/cvt/cvt-21-224x224.yaml: 8 GPUs x 128 images at lr
# 1e-3 (1.25e-4 per GPU), weight decay 0.1, repeated augmentation.
_base_ = ['_base_/cls/in1k_deit_300e.py', '_base_/models/cvt_21.py']
model = dict(backbone=_base_.cls_backbone,
             head=dict(in_channels=_base_.backbone_channels[-1]))
optim_wrapper = dict(optimizer=dict(weight_decay=0.1))
