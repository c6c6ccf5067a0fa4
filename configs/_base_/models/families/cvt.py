# What every CvT backbone base shares (../cvt_*.py set the arch and its
# checkpoint; inherit those, not this template).
#
# `pretrained` (set per arch) is THE place to point at ImageNet weights:
# the official download URL (fetched once into torch hub's cache, checked
# before the run builds anything) or a local file, any supported layout
# converted on load (docs/backbones.md). Override per run:
# --cfg-options model.backbone.init_cfg.checkpoint=PATH_OR_URL
# (`model.backbone.init_cfg=None` trains from scratch).
_base_ = '../../pvt_mm.py'

# Dense prediction: strides 4, 8, 16, 32. 4-level FPNs need a stride-32
# map: a 3x3/2 conv on stage 3.
backbone = dict(type='pvt_mm.CvT', extra_downsample=True,
                out_indices=(0, 1, 2, 3),
                # CvT's convention (its DROP_PATH_RATE): one maximum per
                # stage, rising from 0 within the stage; the official
                # models drop paths in the last stage only.
                drop_path_rate=[0., 0., 0.1],
                init_cfg=dict(type='Pretrained'))
# What the backbone returns per level (its `out_channels`); necks use it.
backbone_channels = [64, 192, 384, 384]
# ImageNet classification (configs/cls_*): the class token, from scratch.
cls_backbone = dict(type='pvt_mm.CvT', out_type='cls_token',
                    drop_path_rate=[0., 0., 0.1])
