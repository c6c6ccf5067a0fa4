# Semantic FPN on ADE20K, the official PVT / PVTv2-Seg recipe
# (segmentation/configs/sem_fpn/PVT/fpn_pvt_*_ade20k_40k.py,
# PVTv2-Seg configs/sem_fpn/PVTv2/fpn_pvtv2_*_ade20k_40k.py): 512x512 crops,
# AdamW (lr 2e-4, weight decay 1e-4), poly schedule (power 0.9, to 0),
# 40k iterations of 8 GPUs x 4 images ("gpu_multiples = 2": twice
# MMSegmentation's 4 GPUs, lr x2, iterations /2). Model, data, schedule and
# runtime come from MMSegmentation's own bases.
#
# Deliberate deviation (docs/model_zoo.md): the official test resize is
# AlignResize (2048x512 bound, both sides rounded to multiples of 32), which
# MMSegmentation 1.x lacks; we resize to the same bound and pad to a
# multiple of 32 in the data preprocessor (the padding is cropped off the
# prediction).
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/schedules/schedule_40k.py',
    'mmseg::_base_/default_runtime.py',
]
crop_size = (512, 512)
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size, test_cfg=dict(size_divisor=32)),
    decode_head=dict(num_classes=150))
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=2e-4, weight_decay=1e-4))
param_scheduler = [
    dict(type='PolyLR', power=0.9, eta_min=0.0, begin=0, end=40000,
         by_epoch=False),
]
# The recipe's total batch: 8 GPUs x 4 images (`--auto-scale-lr` rescales).
auto_scale_lr = dict(enable=False, base_batch_size=32)

# pvt_mm's reliability hooks (docs/reliability.md): atomic checkpoints, a
# clear stop on a non-finite loss, and per-iteration seeding so that a
# resumed run continues exactly.
default_hooks = dict(checkpoint=dict(type='pvt_mm.AtomicCheckpointHook'))
custom_hooks = [dict(type='pvt_mm.NonFiniteLossHook'),
                dict(type='pvt_mm.IterationSeedHook')]
