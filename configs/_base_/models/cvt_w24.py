# CvT-W24 backbone: the arch and its ImageNet weights; the rest is
# families/cvt.py. Download the weights to `pretrained`:
#   https://huggingface.co/microsoft/cvt-w24-384-22k (HF CvtModel, IN-22k)
#   or CvT-w24-384x384-IN-22k.pth from https://github.com/microsoft/CvT
_base_ = './families/cvt.py'

pretrained = 'checkpoints/cvt_w24.pth'
backbone = dict(arch='w24', init_cfg=dict(checkpoint=pretrained))
backbone_channels = [192, 768, 1024, 1024]
cls_backbone = dict(arch='w24', drop_path_rate=[0., 0., 0.3])
