# Sparse R-CNN 3x, 300 proposals, crop + multi-scale 480-800, as the
# official sparse_rcnn_pvt_v2_*_fpn_300_proposals_crop_mstrain_480-800_3x_coco.py:
# MMDetection's own config of that name (the same DETR-style augmentation
# as recipe_3x_ms.py), AdamW (lr 2.5e-5 at 8 GPUs x 2 images, weight decay
# 1e-4), gradients clipped at norm 1, 36 epochs with lr steps at 27 and 33
# after MMDetection 2's 500-iteration linear warm-up. The B2 config sets
# 8 GPUs x 1 image at lr 2.5e-5 / 1.4 as the official one does.
_base_ = ['mmdet::sparse_rcnn/'
          'sparse-rcnn_r50_fpn_300-proposals_crop-ms-480-800-3x_coco.py',
          'recipe_3x_ms.py']
# mmcv 2.1's CUDA focal-loss kernel has no bf16: the same loss with its
# inputs in fp32 under autocast (pvt_mm/losses.py), so bf16 AMP trains too
# (fp32 runs are unchanged; fp16 ones compute it in fp32, as MMDetection 2's
# heads did for the official runs).
model = dict(roi_head=dict(bbox_head=[
    dict(stage, loss_cls=dict(stage.loss_cls, type='pvt_mm.FP32FocalLoss'))
    for stage in _base_.model.roi_head.bbox_head]))
optim_wrapper = dict(
    _delete_=True, type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2.5e-5, weight_decay=1e-4),
    clip_grad=dict(max_norm=1, norm_type=2))
param_scheduler = _base_.ms3x_param_scheduler
# The recipe's total batch: 8 GPUs x 2 images (`--auto-scale-lr` rescales).
auto_scale_lr = dict(enable=False, base_batch_size=16)

# pvt_mm's reliability hooks (docs/reliability.md): atomic checkpoints, a
# clear stop on a non-finite loss, and per-iteration seeding so that a
# resumed run continues exactly.
default_hooks = dict(checkpoint=dict(type='pvt_mm.AtomicCheckpointHook'))
custom_hooks = [dict(type='pvt_mm.NonFiniteLossHook'),
                dict(type='pvt_mm.IterationSeedHook')]
