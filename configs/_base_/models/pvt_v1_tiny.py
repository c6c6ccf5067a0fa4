# PVT-Tiny backbone for dense prediction (strides 4, 8, 16, 32).
#
# `pretrained` is THE place to point at ImageNet weights (a local file; any
# supported layout is converted on load, see docs/backbones.md). Download:
#   https://github.com/whai362/PVT/releases/download/v2/pvt_tiny.pth
# or override per run:
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
# (`model.backbone.init_cfg=None` trains from scratch).
_base_ = '../pvt_mm.py'

pretrained = 'checkpoints/pvt_v1_tiny.pth'
backbone = dict(type='pvt_mm.PVTv1', arch='tiny',
                drop_path_rate=0.1,
                init_cfg=dict(type='Pretrained', checkpoint=pretrained))
# What the backbone returns per level (its `out_channels`); necks use it.
backbone_channels = [64, 128, 320, 512]
# ImageNet classification (configs/cls_*): pooled output, from scratch.
cls_backbone = dict(type='pvt_mm.PVTv1', arch='tiny', out_type='cls_token',
                    drop_path_rate=0.1)
