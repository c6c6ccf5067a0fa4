# CvT-13 backbone for dense prediction (strides 4, 8, 16, 32).
#
# `pretrained` is THE place to point at ImageNet weights (a local file; any
# supported layout is converted on load, see docs/backbones.md). Download:
#   https://huggingface.co/microsoft/cvt-13 (HF CvtModel, pytorch_model.bin)
#   or CvT-13-224x224-IN-1k.pth from https://github.com/microsoft/CvT
# or override per run:
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
# (`model.backbone.init_cfg=None` trains from scratch).
_base_ = '../pvt_mm.py'

pretrained = 'checkpoints/cvt_13.pth'
backbone = dict(type='pvt_mm.CvT', arch='13',
                # 4-level FPNs need a stride-32 map: a 3x3/2 conv on stage 3.
                extra_downsample=True, out_indices=(0, 1, 2, 3),
                # CvT's convention (its DROP_PATH_RATE): one maximum per
                # stage, rising from 0 within the stage; the official
                # models drop paths in the last stage only.
                drop_path_rate=[0., 0., 0.1],
                init_cfg=dict(type='Pretrained', checkpoint=pretrained))
# What the backbone returns per level (its `out_channels`); necks use it.
backbone_channels = [64, 192, 384, 384]
# ImageNet classification (configs/cls_*): pooled output, from scratch.
cls_backbone = dict(type='pvt_mm.CvT', arch='13', out_type='cls_token',
                    drop_path_rate=[0., 0., 0.1])
