# CvT-W24 on ImageNet-1k, 300 epochs (DeiT-style recipe). The official
# CvT-W24 is pre-trained on ImageNet-22k and fine-tuned at 384x384; this
# config trains it from scratch with the CvT-21 recipe (weight decay 0.1,
# as the official cvt-w24-384x384.yaml).
_base_ = ['_base_/cls/in1k_deit_300e.py', '_base_/models/cvt_w24.py']
model = dict(backbone=_base_.cls_backbone,
             head=dict(in_channels=_base_.backbone_channels[-1]))
optim_wrapper = dict(optimizer=dict(weight_decay=0.1))
