# PVT-Tiny backbone: the arch and its ImageNet weights; the rest is
# families/pvt_v1.py. Download the weights to `pretrained`:
#   https://github.com/whai362/PVT/releases/download/v2/pvt_tiny.pth
_base_ = './families/pvt_v1.py'

pretrained = 'checkpoints/pvt_v1_tiny.pth'
backbone = dict(arch='tiny', init_cfg=dict(checkpoint=pretrained))
cls_backbone = dict(arch='tiny')
