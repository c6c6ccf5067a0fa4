# CvT-21 at 384x384 on ImageNet-1k (paper: 83.3 top-1), as the official
# experiments/imagenet/cvt/cvt-21-384x384.yaml: the recipe of
# cls_cvt_21_in1k.py (300 epochs, 8 GPUs x 128 images at lr 1e-3, weight
# decay 0.1) at 384x384 as in cls_cvt_13_384_in1k.py (384x384 training
# crops; a plain bicubic resize to 384x384 at test), and without repeated
# augmentation (the 384 file drops the 224 file's SAMPLER: repeated_aug).
# Built on the CvT-13 384 config for its pipelines; what differs is CvT-21's
# depth and its optimizer settings. The official file trains from scratch
# at 384; cls_cvt_13_384_in1k.py says how to fine-tune instead.
_base_ = ['cls_cvt_13_384_in1k.py']
model = dict(backbone=dict(arch='21'))
train_dataloader = dict(batch_size=128)
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.1))
param_scheduler = [  # warm-up from lr 1e-6
    dict(_base_.param_scheduler[0], start_factor=1e-6 / 1e-3),
    _base_.param_scheduler[1]]
auto_scale_lr = dict(base_batch_size=1024)
