# CvT-13 at 384x384 on ImageNet-1k (paper: 83.0 top-1), as the official
# experiments/imagenet/cvt/cvt-13-384x384.yaml: the 224x224 recipe of
# cls_cvt_13_in1k.py (300 epochs, 8 GPUs x 256 images at lr 2e-3, weight
# decay 0.05, no repeated augmentation) with 384x384 training crops and,
# at test, a plain bicubic resize to 384x384 (TEST.CENTER_CROP: False; no
# resize-then-crop). The official file trains from scratch at 384 (no
# MODEL.PRETRAINED); to fine-tune a 224x224 model instead, point
# `load_from` at its checkpoint (CvT has no position embedding, so the
# weights fit any size) and shorten the schedule.
_base_ = ['cls_cvt_13_in1k.py']
img_size = 384
train_dataloader = dict(dataset=dict(pipeline=[
    dict(_base_.train_dataloader.dataset.pipeline[0]),
    dict(_base_.train_dataloader.dataset.pipeline[1], scale=img_size),
    *_base_.train_dataloader.dataset.pipeline[2:]]))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_size, img_size), backend='pillow',
         interpolation='bicubic'),
    dict(type='PackInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
