# PVTv2-B0 backbone: the arch and its ImageNet weights; the rest is
# families/pvt_v2.py. Download the weights to `pretrained`:
#   https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b0.pth
_base_ = './families/pvt_v2.py'

pretrained = 'checkpoints/pvt_v2_b0.pth'
backbone = dict(arch='b0', init_cfg=dict(checkpoint=pretrained))
backbone_channels = [32, 64, 160, 256]
cls_backbone = dict(arch='b0')
