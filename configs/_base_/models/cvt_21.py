# CvT-21 backbone: the arch and its ImageNet weights; the rest is
# families/cvt.py. `pretrained`: the official weights in HF transformers'
# CvtModel layout on the Hugging Face hub (microsoft/cvt-21, converted on
# load; downloaded once into torch hub's cache; a local file: --cfg-options
# model.backbone.init_cfg.checkpoint=PATH).
_base_ = './families/cvt.py'

pretrained = 'https://huggingface.co/microsoft/cvt-21/resolve/main/pytorch_model.bin'
backbone = dict(arch='21', init_cfg=dict(checkpoint=pretrained))
cls_backbone = dict(arch='21')
