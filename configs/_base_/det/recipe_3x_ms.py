# The PVTv2 3x multi-scale recipe of the official detection configs
# (detection/configs/{mask_rcnn,gfl,atss,cascade_mask_rcnn}_pvt_v2_*_3x_*.py),
# shared by the 3x bases (mask_rcnn_3x_ms.py, gfl_3x_ms.py, ...): DETR-style
# multi-scale resize / random-crop augmentation, AdamW (lr 1e-4, betas
# (0.9, 0.999), weight decay 0.05, none on parameters whose name contains
# `norm`), 36 epochs with lr steps at 27 and 33 after a 500-iteration linear
# warm-up, 8 GPUs x 2 images. The official GFL / ATSS / Cascade Mask R-CNN
# and the B2-Li Mask R-CNN train in fp16 (`ms3x_amp_optim_wrapper`).
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
         end=500),
    dict(type='MultiStepLR', begin=0, end=36, by_epoch=True,
         milestones=[27, 33], gamma=0.1),
]
ms3x_optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                   weight_decay=0.05),
    # The official custom_keys, matched against parameter names as in
    # MMDetection 2 (the last two match no PVT parameter).
    paramwise_cfg=dict(custom_keys={
        'norm': dict(decay_mult=0.),
        'absolute_pos_embed': dict(decay_mult=0.),
        'relative_position_bias_table': dict(decay_mult=0.)}))
# The same in fp16 (the official configs: apex, dynamic loss scaling).
ms3x_amp_optim_wrapper = dict(ms3x_optim_wrapper, type='AmpOptimWrapper')
