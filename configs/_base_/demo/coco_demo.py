# Data settings of the detection demos (configs/demo/): the COCO-layout
# demo data of tools/misc/make_demo_data.py, 128x128 images, 3 shape classes.
# Names carry a `demo_` prefix so this base can sit beside a full config.
demo_root = 'data/demo/coco/'
demo_metainfo = dict(classes=('rectangle', 'ellipse', 'triangle'))
demo_scale = (128, 128)


def _pipelines(with_mask):
    load = dict(type='LoadAnnotations', with_bbox=True, with_mask=with_mask)
    train = [dict(type='LoadImageFromFile'), load,
             dict(type='Resize', scale=demo_scale, keep_ratio=True),
             dict(type='RandomFlip', prob=0.5),
             dict(type='PackDetInputs')]
    test = [dict(type='LoadImageFromFile'),
            dict(type='Resize', scale=demo_scale, keep_ratio=True), load,
            dict(type='PackDetInputs',
                 meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                            'scale_factor'))]
    return train, test


def _loaders(with_mask):
    """(train_dataloader, val_dataloader, test_dataloader, val_evaluator,
    test_evaluator): a demo config unpacks them in one assignment."""
    train, test = _pipelines(with_mask)
    common = dict(num_workers=1, persistent_workers=False)
    train_loader = dict(
        batch_size=8, **common,
        dataset=dict(data_root=demo_root, metainfo=demo_metainfo,
                     ann_file='annotations/instances_train.json',
                     data_prefix=dict(img='train/'),
                     filter_cfg=dict(filter_empty_gt=True, min_size=4),
                     pipeline=train))
    val_loader = dict(
        batch_size=8, **common,
        dataset=dict(data_root=demo_root, metainfo=demo_metainfo,
                     ann_file='annotations/instances_val.json',
                     data_prefix=dict(img='val/'), pipeline=test))
    evaluator = dict(ann_file=demo_root + 'annotations/instances_val.json')
    return [train_loader, val_loader, val_loader, evaluator, evaluator]


demo_box_data = _loaders(with_mask=False)
demo_mask_data = _loaders(with_mask=True)
