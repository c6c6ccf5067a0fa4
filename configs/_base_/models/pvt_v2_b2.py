# PVTv2-B2 backbone: the arch and its ImageNet weights; the rest is
# families/pvt_v2.py. `pretrained`: the official release (whai362/PVT), as
# MMDetection's PVT configs load them (downloaded once into torch hub's cache;
# a local file: --cfg-options model.backbone.init_cfg.checkpoint=PATH,
# docs/get_started.md).
_base_ = './families/pvt_v2.py'

pretrained = 'https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b2.pth'
backbone = dict(arch='b2', init_cfg=dict(checkpoint=pretrained))
cls_backbone = dict(arch='b2')
