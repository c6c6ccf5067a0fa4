# GFL 3x multi-scale: the 1x model and data with recipe_3x_ms.py, in fp16
# as the official gfl_pvt_v2_*_fpn_3x_mstrain_fp16.py.
_base_ = ['gfl_1x.py', 'recipe_3x_ms.py']
train_dataloader = dict(dataset=dict(pipeline=_base_.ms_crop_box_pipeline))
train_cfg = _base_.ms3x_train_cfg
param_scheduler = _base_.ms3x_param_scheduler
optim_wrapper = _base_.ms3x_amp_optim_wrapper
