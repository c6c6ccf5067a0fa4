# PVT-Small backbone: the arch and its ImageNet weights; the rest is
# families/pvt_v1.py. Download the weights to `pretrained`:
#   https://github.com/whai362/PVT/releases/download/v2/pvt_small.pth
_base_ = './families/pvt_v1.py'

pretrained = 'checkpoints/pvt_v1_small.pth'
backbone = dict(arch='small', init_cfg=dict(checkpoint=pretrained))
cls_backbone = dict(arch='small')
