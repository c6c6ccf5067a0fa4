# What every PVTv1 backbone base shares (../pvt_v1_*.py set the arch and
# its checkpoint; inherit those, not this template).
#
# `pretrained` (set per arch) is THE place to point at ImageNet weights:
# the official download URL (fetched once into torch hub's cache, checked
# before the run builds anything) or a local file, any supported layout
# converted on load (docs/backbones.md). Override per run:
# --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
# (`model.backbone.init_cfg=None` trains from scratch).
_base_ = '../../pvt_mm.py'

# Dense prediction: strides 4, 8, 16, 32.
backbone = dict(type='pvt_mm.PVTv1', drop_path_rate=0.1,
                init_cfg=dict(type='Pretrained'))
# What the backbone returns per level (its `out_channels`); necks use it.
backbone_channels = [64, 128, 320, 512]
# ImageNet classification (configs/cls_*): the class token, from scratch.
cls_backbone = dict(type='pvt_mm.PVTv1', out_type='cls_token',
                    drop_path_rate=0.1)
