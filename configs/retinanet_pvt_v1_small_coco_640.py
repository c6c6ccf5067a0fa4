# RetinaNet + PVT-Small, COCO, 1x at 640 pixels (short side), as the
# official retinanet_pvt_s_fpn_1x_coco_640.py: train and test at 1066x640.
_base_ = 'retinanet_pvt_v1_small_coco.py'
scale = (1066, 640)
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]))
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor')),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
