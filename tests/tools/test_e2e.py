"""End to end on generated demo data, through the real command-line tools:
train -> checkpoint -> test (metrics.json) -> resume, per head type, and
2-process DDP (gloo on CPU). Only the RetinaNet path runs by default; the
others are ``slow`` (``make test-slow``)."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from helpers import REPO_ROOT, load_tool

TOOLS = osp.join(REPO_ROOT, 'tools')
DEMO = osp.join(REPO_ROOT, 'configs', 'demo')
# One torch thread per process: with more threads than free cores (CI, a
# shared machine, 2 DDP processes on 2 cores) training is several times
# slower.
ENV = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    from pvt_mm.data.demo_data import make_demo_data
    return make_demo_data(str(tmp_path_factory.mktemp('demo_data')),
                          num_train=16, num_val=8)


def run(tool, *args, cwd, in_process=False):
    """``python tools/<tool> args`` in a subprocess, or (faster: no second
    import of torch/mmdet) its ``main(args)`` in this process."""
    if in_process:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as ENV does for subprocesses
        try:
            load_tool(tool[:-3]).main(list(args))
        finally:
            torch.set_num_threads(threads)
        return ''
    res = subprocess.run([sys.executable, osp.join(TOOLS, tool), *args],
                         capture_output=True, text=True, cwd=str(cwd),
                         env=ENV)
    assert res.returncode == 0, (res.stdout[-3000:], res.stderr[-5000:])
    return res.stdout + res.stderr


def options(data_root, *extra):
    return ['--cfg-options', f'data_root={data_root}',
            'train_dataloader.batch_size=4', 'val_dataloader.batch_size=4',
            'test_dataloader.batch_size=4', *extra]


def train_log(work_dir):
    logs = sorted(glob.glob(osp.join(work_dir, '*', '*.log')))
    return ''.join(open(p).read() for p in logs)


def train_test(tmp_path, config, data_root, epochs_key, first, metric,
               *extra, in_process=False):
    """Train ``first`` epochs/iterations, test the last checkpoint, return
    (work_dir, metrics, last checkpoint)."""
    work_dir = str(tmp_path / 'wd')
    cfg = osp.join(DEMO, config)
    run('train.py', cfg, '--work-dir', work_dir,
        *options(data_root, f'{epochs_key}={first}', *extra), cwd=tmp_path,
        in_process=in_process)
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        ckpt = f.read().strip()
    assert osp.isfile(ckpt)
    # A model trained for a few iterations scores below the default
    # threshold; keep all its boxes so the metric is computed.
    test_extra = [e for e in extra if not e.startswith('train_cfg')]
    if 'coco' in metric:
        test_extra.append('model.test_cfg.score_thr=0.0')
    run('test.py', cfg, ckpt, '--work-dir', work_dir, '--out',
        osp.join(work_dir, 'preds.pkl'), *options(data_root, *test_extra),
        cwd=tmp_path, in_process=in_process)
    assert osp.getsize(osp.join(work_dir, 'preds.pkl')) > 0
    with open(osp.join(work_dir, 'metrics.json')) as f:
        metrics = json.load(f)
    assert metrics['config'] == cfg and metrics['checkpoint'] == ckpt
    value = metrics['metrics'][metric]
    assert 0.0 <= value <= 100.0
    return work_dir, metrics, ckpt


def test_retinanet_train_test_resume(tmp_path, data):
    root = osp.join(data, 'coco')
    work_dir, _, ckpt = train_test(
        tmp_path, 'retinanet_pvt_v2_b0_demo.py', root,
        'train_cfg.max_epochs', 1, 'coco/bbox_mAP', in_process=True)
    assert ckpt.endswith('epoch_1.pth')
    first = torch.load(ckpt, map_location='cpu', weights_only=False)
    assert first['meta']['epoch'] == 1 and first['meta']['iter'] == 4

    # --resume continues from epoch_1 (optimizer, scheduler, iteration) ...
    run('train.py', osp.join(DEMO, 'retinanet_pvt_v2_b0_demo.py'),
        '--work-dir', work_dir, '--resume',
        *options(root, 'train_cfg.max_epochs=2'), cwd=tmp_path,
        in_process=True)
    log = train_log(work_dir)
    assert 'resumed epoch: 1, iter: 4' in log
    second = torch.load(osp.join(work_dir, 'epoch_2.pth'), map_location='cpu',
                        weights_only=False)
    assert second['meta']['epoch'] == 2 and second['meta']['iter'] == 8
    # ... with the first run's optimizer state, not a fresh one.
    assert second['optimizer']['state'][0]['step'] == 8


@pytest.mark.slow
@pytest.mark.parametrize('config,sub,key,metric', [
    ('mask_rcnn_pvt_v2_b0_demo.py', 'coco', 'train_cfg.max_epochs',
     'coco/segm_mAP'),
    ('gfl_pvt_v2_b0_demo.py', 'coco', 'train_cfg.max_epochs',
     'coco/bbox_mAP'),
    ('sem_fpn_pvt_v2_b0_demo.py', 'ade', 'train_cfg.max_iters', 'mIoU'),
    ('cls_pvt_v2_b0_demo.py', 'imagenet', 'train_cfg.max_epochs',
     'accuracy/top1'),
])
def test_head_types_train_test_resume(tmp_path, data, config, sub, key,
                                      metric):
    first = 2 if 'iters' in key else 1
    extra = ['train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=2'
             ] if 'iters' in key else ['train_cfg.val_interval=1']
    root = osp.join(data, sub)
    work_dir, _, _ = train_test(tmp_path, config, root, key, first, metric,
                                *extra)
    run('train.py', osp.join(DEMO, config), '--work-dir', work_dir,
        '--resume', *options(root, f'{key}={2 * first}', *extra),
        cwd=tmp_path)
    assert 'resumed' in train_log(work_dir)


@pytest.mark.slow
def test_two_process_ddp(tmp_path, data):
    """tools/dist_train.sh with 2 processes: gloo on a CPU-only machine."""
    work_dir = str(tmp_path / 'wd')
    env = dict(ENV, PYTHON=sys.executable, PORT='29517')
    res = subprocess.run(
        ['bash', osp.join(TOOLS, 'dist_train.sh'),
         osp.join(DEMO, 'retinanet_pvt_v2_b0_demo.py'), '2',
         '--work-dir', work_dir,
         *options(osp.join(data, 'coco'), 'train_cfg.max_epochs=1',
                  'train_cfg.val_interval=1', 'model.test_cfg.score_thr=0.0')],
        capture_output=True, text=True, cwd=str(tmp_path), env=env)
    assert res.returncode == 0, res.stderr[-5000:]
    log = train_log(work_dir)
    assert 'Distributed launcher: pytorch' in log
    assert 'GPU number: 2' in log  # MMEngine's name for the world size
    # 16 images / (2 processes x 4) = 2 iterations per epoch
    ckpt = torch.load(osp.join(work_dir, 'epoch_1.pth'), map_location='cpu',
                      weights_only=False)
    assert ckpt['meta']['iter'] == 2
    assert 'coco/bbox_mAP' in log


@pytest.mark.slow
def test_demo_learns(tmp_path):
    """``make demo``: trained bbox mAP far above the untrained model's."""
    res = subprocess.run(
        [sys.executable, osp.join(TOOLS, 'demo.py'), '--work-dir',
         str(tmp_path / 'wd')], capture_output=True, text=True, env=ENV)
    assert res.returncode == 0, res.stderr[-5000:]
    with open(tmp_path / 'wd' / 'demo_metrics.json') as f:
        result = json.load(f)
    assert result['untrained']['bbox_mAP'] < 0.05
    assert result['trained']['bbox_mAP'] > 0.3
    assert 'bbox_mAP' in res.stdout and 'untrained' in res.stdout


def test_tta_runs_every_view(tmp_path, data, monkeypatch):
    """``tools/test.py --tta`` runs the config's tta_pipeline through its
    tta_model: every image is predicted at 6 scales x 2 flips and merged."""
    from mmengine.config import Config
    from mmseg.models import SegTTAModel
    from mmseg.registry import MODELS
    from pvt_mm.engine.runner import init_scope
    cfg_path = osp.join(DEMO, 'sem_fpn_pvt_v2_b0_demo.py')
    cfg = Config.fromfile(cfg_path)
    init_scope(cfg)
    ckpt = str(tmp_path / 'untrained.pth')
    torch.save(dict(state_dict=MODELS.build(cfg.model).state_dict()), ckpt)
    views = []
    merge = SegTTAModel.merge_preds

    def counting_merge(self, data_samples_list):
        views.extend(len(samples) for samples in data_samples_list)
        return merge(self, data_samples_list)

    monkeypatch.setattr(SegTTAModel, 'merge_preds', counting_merge)
    root = osp.join(data, 'ade')
    work_dir = str(tmp_path / 'wd')
    run('test.py', cfg_path, ckpt, '--tta', '--work-dir', work_dir,
        '--cfg-options', f'data_root={root}', 'test_dataloader.batch_size=1',
        cwd=tmp_path, in_process=True)
    assert views == [12] * 8  # 8 validation images, 6 scales x 2 flips
    with open(osp.join(work_dir, 'metrics.json')) as f:
        metrics = json.load(f)
    assert metrics['tta'] is True and 0 <= metrics['metrics']['mIoU'] <= 100


def test_tta_needs_the_configs_pipeline_and_model():
    from mmengine.config import Config
    from pvt_mm.engine.runner import use_test_time_aug
    cfg = Config(dict(model=dict(type='RetinaNet'),
                      test_dataloader=dict(dataset=dict(pipeline=[]))))
    with pytest.raises(ValueError, match='defines no tta_pipeline / '
                                         'tta_model'):
        use_test_time_aug(cfg)


def test_long_schedule_tta_scales_are_mmseg_0x_multiscale_flip(tmp_path):
    """PVT-Large* (paper Table 5) tests at the 2048x512 scale times
    0.5 ... 1.75, each flipped and not (MMSegmentation 0.x
    MultiScaleFlipAug), not at the image size times the ratios."""
    import numpy as np
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmseg.registry import TRANSFORMS
    from pvt_mm.engine.runner import init_scope
    cfg = Config.fromfile(osp.join(
        REPO_ROOT, 'configs', 'sem_fpn_pvt_v1_large_ade20k_160k_tta.py'))
    init_scope(cfg)
    with DefaultScope.overwrite_default_scope('mmseg'):
        tta = TRANSFORMS.build(cfg.tta_pipeline[1])
    from PIL import Image
    img = np.zeros((300, 400, 3), np.uint8)
    seg_path = str(tmp_path / 'seg.png')
    Image.fromarray(np.ones((300, 400), np.uint8)).save(seg_path)
    out = tta(dict(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2],
                   seg_fields=[], reduce_zero_label=True, img_path='x.jpg',
                   seg_map_path=seg_path))
    shapes = [s.img_shape for s in out['data_samples']]
    flips = [s.flip for s in out['data_samples']]
    # keep_ratio inside (2048 r, 512 r): the short side 300 -> 512 r
    expected = [(round(300 * 512 * r / 300), round(400 * 512 * r / 300))
                for r in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)]
    assert sorted(set(shapes)) == sorted(set(expected))
    assert sorted(flips) == [False] * 6 + [True] * 6
    assert cfg.train_cfg.max_iters == 160000
    assert cfg.param_scheduler[0].end == 160000
