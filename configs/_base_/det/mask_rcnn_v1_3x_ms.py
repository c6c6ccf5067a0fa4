# Mask R-CNN 3x multi-scale (PVTv1 paper): mask_rcnn_1x.py with
# recipe_v1_3x_ms.py.
_base_ = ['mask_rcnn_1x.py', 'recipe_v1_3x_ms.py']
train_dataloader = dict(dataset=dict(pipeline=_base_.ms640_mask_pipeline))
train_cfg = _base_.ms3x_train_cfg
param_scheduler = _base_.ms3x_param_scheduler
