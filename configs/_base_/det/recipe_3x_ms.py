# The PVTv2 paper's 3x multi-scale recipe, shared by Mask R-CNN and GFL
# (mask_rcnn_3x_ms.py, gfl_3x_ms.py apply it on top of their 1x base):
# DETR-style multi-scale resize / random-crop augmentation, AdamW (lr 1e-4,
# weight decay 0.05, none on norms and position embeddings), 36 epochs with
# lr steps at 27 and 33, 8 GPUs x 2 images.
ms_scales = [(s, 1333) for s in range(480, 801, 32)]


def _ms_crop_pipeline(with_mask):
    return [
        dict(type='LoadImageFromFile', backend_args=None),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=with_mask),
        dict(type='RandomFlip', prob=0.5),
        dict(type='RandomChoice', transforms=[
            [dict(type='RandomChoiceResize', scales=ms_scales,
                  keep_ratio=True)],
            [dict(type='RandomChoiceResize',
                  scales=[(400, 1333), (500, 1333), (600, 1333)],
                  keep_ratio=True),
             dict(type='RandomCrop', crop_type='absolute_range',
                  crop_size=(384, 600), allow_negative_crop=True),
             dict(type='RandomChoiceResize', scales=ms_scales,
                  keep_ratio=True)],
        ]),
        dict(type='PackDetInputs'),
    ]


ms_crop_box_pipeline = _ms_crop_pipeline(with_mask=False)
ms_crop_mask_pipeline = _ms_crop_pipeline(with_mask=True)

ms3x_train_cfg = dict(max_epochs=36)
ms3x_param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=1000),
    dict(type='MultiStepLR', begin=0, end=36, by_epoch=True,
         milestones=[27, 33], gamma=0.1),
]
ms3x_optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                   weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.,
                       custom_keys={'pos_embed': dict(decay_mult=0.),
                                    'cls_token': dict(decay_mult=0.)}))
