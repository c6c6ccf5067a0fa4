# Trans2Seg + PVTv2-B0 on the ADE20K-layout demo data, from scratch: the
# learning check of the Trans2Seg family (tests/configs/test_demo_families.py).
# Data, schedule and backbone are the Semantic FPN demo's; the head is
# configs/trans2seg_pvt_v1_small_ade20k_40k.py's ("medium", the head's
# defaults) on B0's stride-4 and stride-32 maps, built for the demo's 128x128
# crops (a 4x4 stride-32 grid) and tested in 128x128 windows.
_base_ = ['sem_fpn_pvt_v2_b0_demo.py']
custom_imports = dict(imports=['pvt_mm', 'pvt_mm.engine', 'pvt_mm.heads'],
                      allow_failed_imports=False)
model = dict(
    data_preprocessor=dict(
        test_cfg=dict(_delete_=True, size=_base_.crop_size)),
    neck=None,
    decode_head=dict(
        _delete_=True, type='pvt_mm.Trans2SegHead', in_channels=(32, 256),
        in_index=(0, 3), feat_size=(4, 4), num_classes=4,
        norm_cfg=dict(type='BN', requires_grad=True)),  # SyncBN needs GPUs
    test_cfg=dict(mode='slide', crop_size=_base_.crop_size, stride=(85, 85)))
