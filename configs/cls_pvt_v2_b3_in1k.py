# PVTv2-B3 on ImageNet-1k, 300 epochs (DeiT-style recipe).
_base_ = ['_base_/cls/in1k_deit_300e.py', '_base_/models/pvt_v2_b3.py']
model = dict(backbone=_base_.cls_backbone,
             head=dict(in_channels=_base_.backbone_channels[-1]))
# As the official per-model config: gradients clipped at norm 1.0.
optim_wrapper = dict(clip_grad=dict(max_norm=1.0))
