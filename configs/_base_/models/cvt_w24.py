# CvT-W24 backbone: the arch and its ImageNet weights; the rest is
# families/cvt.py. `pretrained`: the official weights in HF transformers'
# CvtModel layout on the Hugging Face hub (microsoft/cvt-w24-384-22k,
# converted on load); ImageNet-22k, 384x384, as the official CvT-W24.
_base_ = './families/cvt.py'

pretrained = ('https://huggingface.co/microsoft/cvt-w24-384-22k/resolve/main/'
              'pytorch_model.bin')
backbone = dict(arch='w24', init_cfg=dict(checkpoint=pretrained))
backbone_channels = [192, 768, 1024, 1024]
cls_backbone = dict(arch='w24', drop_path_rate=[0., 0., 0.3])
