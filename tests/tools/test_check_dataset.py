"""A user's own dataset against the config, before training starts
(pvt_mm/data/contents.py, tools/misc/check_dataset.py): class names that do
not match (the empty-dataset trap), another category order, num_classes of
every head, nothing left after filter_cfg, missing images, segmentation
labels out of range; each with its own error, and the demo data passing
as the negative control."""
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import REPO_ROOT, load_tool
from pvt_mm.data import DatasetContentError, check_dataset_contents
from pvt_mm.data.demo_data import make_demo_data
from pvt_mm.engine.runner import init_scope, load_config

DEMO = osp.join(REPO_ROOT, 'configs', 'demo')
CONFIGS = osp.join(REPO_ROOT, 'configs')


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    """Demo data whose classes are not the configs' ('box', 'ball',
    'wedge' instead of rectangle, ellipse, triangle)."""
    return make_demo_data(str(tmp_path_factory.mktemp('shapes')),
                          num_train=6, num_val=3,
                          classes=('box', 'ball', 'wedge'))


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    return make_demo_data(str(tmp_path_factory.mktemp('demo')), num_train=6,
                          num_val=3)


def config(name, data_root, **options):
    cfg = load_config(osp.join(DEMO, name),
                      dict(data_root=data_root, **options))
    init_scope(cfg)
    return cfg


def copy_of(root, tmp_path):
    out = str(tmp_path / 'copy')
    shutil.copytree(root, out)
    return out


def edit_json(path, fn):
    with open(path) as f:
        data = json.load(f)
    fn(data)
    with open(path, 'w') as f:
        json.dump(data, f)


@pytest.mark.parametrize('name', ['retinanet_pvt_v2_b0_demo.py',
                                  'cascade_mask_rcnn_pvt_v2_b0_demo.py',
                                  'sem_fpn_pvt_v2_b0_demo.py'])
def test_demo_data_passes(demo, name):
    """The negative control: data that fits its config raises nothing."""
    sub = 'ade' if name.startswith('sem_fpn') else 'coco'
    notes = check_dataset_contents(config(name, f'{demo}/{sub}/'),
                                   ['train', 'val', 'test'])
    if sub == 'ade':
        assert any('labels 0..3 (reduce_zero_label=True)' in n
                   for n in notes), notes


def test_class_names_that_do_not_match(shapes):
    """The famous 'need at least one array to concatenate': MMDetection
    itself fails on this data; the check says why and how to fix it."""
    cfg = config('retinanet_pvt_v2_b0_demo.py', f'{shapes}/coco/')
    from mmdet.registry import DATASETS
    with pytest.raises(ValueError, match='need at least one array'):
        DATASETS.build(cfg.train_dataloader.dataset)
    with pytest.raises(DatasetContentError) as info:
        check_dataset_contents(cfg, ['train'])
    msg = str(info.value)
    assert "none of the config's 3 classes (metainfo.classes)" in msg
    assert 'need at least one array to concatenate' in msg
    # side by side, and the two lines that fix it
    assert "rectangle" in msg and 'box' in msg
    assert "metainfo = dict(classes=('box', 'ball', 'wedge'))" in msg
    assert 'model.bbox_head.num_classes = 3' in msg


def test_default_coco_classes_against_a_users_file(shapes):
    """A COCO config used as it is (no metainfo): COCO's 80 classes are
    compared, and the fix names every head of a Cascade Mask R-CNN."""
    cfg = load_config(osp.join(CONFIGS,
                               'cascade_mask_rcnn_pvt_v2_b2_coco_3x_ms.py'))
    init_scope(cfg)
    ds = cfg.train_dataloader.dataset
    while 'dataset' in ds:
        ds = ds.dataset
    ds.update(data_root=f'{shapes}/coco/',
              ann_file='annotations/instances_train.json',
              data_prefix=dict(img='train/'))
    with pytest.raises(DatasetContentError) as info:
        check_dataset_contents(cfg, ['train'])
    msg = str(info.value)
    assert 'the default classes of CocoDataset' in msg
    assert ' person ' in msg and ' box' in msg
    for head in ('model.roi_head.bbox_head[0].num_classes',
                 'model.roi_head.bbox_head[2].num_classes',
                 'model.roi_head.mask_head.num_classes'):
        assert head in msg
    assert 'rpn_head' not in msg


def test_category_order_differs(demo, tmp_path):
    root = copy_of(demo, tmp_path)
    ann = osp.join(root, 'coco', 'annotations', 'instances_train.json')
    edit_json(ann, lambda d: d['categories'].reverse())
    cfg = config('retinanet_pvt_v2_b0_demo.py', f'{root}/coco/')
    with pytest.raises(DatasetContentError) as info:
        check_dataset_contents(cfg, ['train'])
    msg = str(info.value)
    assert 'another order' in msg
    assert "0      rectangle     triangle   <- differs" in msg
    assert "classes=('triangle', 'ellipse', 'rectangle')" in msg


def test_num_classes_differs(demo):
    cfg = config('mask_rcnn_pvt_v2_b0_demo.py', f'{demo}/coco/')
    cfg.model.roi_head.mask_head.num_classes = 80
    with pytest.raises(DatasetContentError,
                       match=r'model\.roi_head\.mask_head\.num_classes=80, '
                       r'but train_dataloader\.dataset has 3 classes'):
        check_dataset_contents(cfg, ['train'])


def test_forgotten_val_metainfo(demo):
    """metainfo set for training but not for validation: the val set is
    checked against COCO's defaults and fails with the fix."""
    cfg = config('retinanet_pvt_v2_b0_demo.py', f'{demo}/coco/')
    del cfg.val_dataloader.dataset['metainfo']
    check_dataset_contents(cfg, ['train'])
    with pytest.raises(DatasetContentError, match=r'val_dataloader\.dataset'
                       r'.*none of the config\'s 80 classes'):
        check_dataset_contents(cfg, ['val'])


def test_nothing_left_after_filtering(demo):
    cfg = config('retinanet_pvt_v2_b0_demo.py', f'{demo}/coco/')
    cfg.train_dataloader.dataset.filter_cfg.min_size = 1000
    with pytest.raises(DatasetContentError) as info:
        check_dataset_contents(cfg, ['train'])
    msg = str(info.value)
    assert 'leaves no training image of 6' in msg
    assert '6 have a side shorter than min_size=1000' in msg


def test_missing_images(demo, tmp_path):
    root = copy_of(demo, tmp_path)
    for name in ('000001.jpg', '000004.jpg'):
        os.remove(osp.join(root, 'coco', 'train', name))
    cfg = config('retinanet_pvt_v2_b0_demo.py', f'{root}/coco/')
    with pytest.raises(DatasetContentError,
                       match=r'2 of 6 images .* not in .*train/ \(first: '
                       r'000001\.jpg, 000004\.jpg\)'):
        check_dataset_contents(cfg, ['train'])


def test_ignored_categories_are_a_note(demo, tmp_path):
    root = copy_of(demo, tmp_path)
    ann = osp.join(root, 'coco', 'annotations', 'instances_train.json')
    edit_json(ann, lambda d: d['categories'].append(
        dict(id=4, name='hexagon', supercategory='shape')))
    notes = check_dataset_contents(
        config('retinanet_pvt_v2_b0_demo.py', f'{root}/coco/'), ['train'])
    assert any("categories the config does not name are ignored ('hexagon')"
               in n for n in notes), notes


def test_segmentation_labels_out_of_range(demo, tmp_path):
    root = copy_of(demo, tmp_path)
    mask = osp.join(root, 'ade', 'annotations', 'training', '000002.png')
    label = np.asarray(Image.open(mask)).copy()
    label[:4, :4] = 9  # label 8 after reduce_zero_label, num_classes is 4
    Image.fromarray(label).save(mask)
    cfg = config('sem_fpn_pvt_v2_b0_demo.py', f'{root}/ade/')
    with pytest.raises(DatasetContentError,
                       match=r'labels \[8\].*000002\.png.*decode_head\.'
                       r'num_classes is 4'):
        check_dataset_contents(cfg, ['train'])


def test_segmentation_without_reduce_zero_label(demo):
    """ADE-style masks (0 = unlabelled) read without reduce_zero_label:
    labels reach num_classes, and the error suggests the switch."""
    cfg = config('sem_fpn_pvt_v2_b0_demo.py', f'{demo}/ade/')
    ds = cfg.train_dataloader.dataset
    ds.reduce_zero_label = False
    for step in ds.pipeline:
        if step['type'] == 'LoadAnnotations':
            step['reduce_zero_label'] = False
    with pytest.raises(DatasetContentError, match='set reduce_zero_label='
                       'True'):
        check_dataset_contents(cfg, ['train'])


def test_check_dataset_cli(shapes, demo):
    tool = osp.join(REPO_ROOT, 'tools', 'misc', 'check_dataset.py')
    cfg = osp.join(DEMO, 'retinanet_pvt_v2_b0_demo.py')
    bad = subprocess.run([sys.executable, tool, cfg, '--cfg-options',
                          f'data_root={shapes}/coco/'],
                         capture_output=True, text=True)
    assert bad.returncode == 1
    assert 'check_dataset: PROBLEM' in bad.stderr
    assert "classes=('box', 'ball', 'wedge')" in bad.stderr
    assert 'Traceback' not in bad.stderr
    good = load_tool('misc/check_dataset').main(
        [cfg, '--cfg-options', f'data_root={demo}/coco/'])
    assert good == 0


def test_train_checks_contents_before_building(shapes, tmp_path,
                                               monkeypatch):
    train = load_tool('train')
    monkeypatch.setattr(train, 'build_runner', lambda cfg: pytest.fail(
        'the runner was built'))
    with pytest.raises(DatasetContentError, match='none of the config'):
        train.main([osp.join(DEMO, 'retinanet_pvt_v2_b0_demo.py'),
                    '--work-dir', str(tmp_path / 'wd'),
                    '--cfg-options', f'data_root={shapes}/coco/'])


def test_demo_data_with_other_class_names(tmp_path):
    """make_demo_data.py's stand-ins for a user's data: three names of
    one's own, or COCO's 80 categories under COCO 2017's file names; the
    scenes are the same whatever the names."""
    make = load_tool('misc/make_demo_data').main
    with pytest.raises(SystemExit, match='--classes: .*3 different names'):
        make(['--out', str(tmp_path / 'x'), '--classes', 'a,b'])
    with pytest.raises(SystemExit, match='--classes: .*3 different names'):
        make(['--out', str(tmp_path / 'x'), '--classes', 'a,a,b'])
    make(['--out', str(tmp_path / 'coco'), '--num-train', '3', '--num-val',
          '1', '--classes', 'coco', '--coco2017'])
    make(['--out', str(tmp_path / 'own'), '--num-train', '3', '--num-val',
          '1', '--classes', 'box,ball,wedge'])
    coco = json.load(open(tmp_path / 'coco' / 'coco' / 'annotations' /
                          'instances_train2017.json'))
    own = json.load(open(tmp_path / 'own' / 'coco' / 'annotations' /
                         'instances_train.json'))
    from mmdet.datasets import CocoDataset
    assert [c['name'] for c in coco['categories']] == list(
        CocoDataset.METAINFO['classes'])
    assert [c['name'] for c in own['categories']] == ['box', 'ball', 'wedge']
    assert coco['annotations'] == own['annotations']
    assert sorted(os.listdir(tmp_path / 'coco' / 'coco')) == [
        'annotations', 'train2017', 'val2017']
    assert sorted(os.listdir(tmp_path / 'own' / 'imagenet' / 'train')) == [
        'ball', 'box', 'wedge']
