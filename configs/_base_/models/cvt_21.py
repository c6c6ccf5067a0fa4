# CvT-21 backbone: the arch and its ImageNet weights; the rest is
# families/cvt.py. Download the weights to `pretrained`:
#   https://huggingface.co/microsoft/cvt-21 (HF CvtModel, pytorch_model.bin)
#   or CvT-21-224x224-IN-1k.pth from https://github.com/microsoft/CvT
_base_ = './families/cvt.py'

pretrained = 'checkpoints/cvt_21.pth'
backbone = dict(arch='21', init_cfg=dict(checkpoint=pretrained))
cls_backbone = dict(arch='21')
