"""tools/: data-root override, dataset checks before any model is built,
argument errors, launcher scripts and the paper table (no training here;
see test_e2e.py)."""
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys
import types

import pytest

from helpers import REPO_ROOT, load_tool
from pvt_mm.engine import runner as common
from pvt_mm.data import demo_data as make_demo_data
from pvt_mm.data import (DatasetLayoutError,
                             check_dataset_layout)

TOOLS = osp.join(REPO_ROOT, 'tools')
RETINANET = osp.join(REPO_ROOT, 'configs', 'retinanet_pvt_v2_b2_coco.py')


def cli(**kw):
    args = dict(work_dir=None, cfg_options={}, launcher='none', local_rank=0)
    args.update(kw)
    return types.SimpleNamespace(**args)


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('demo'))
    return make_demo_data.make_demo_data(out, num_train=6, num_val=3)


def test_data_root_option_moves_every_dataset_path(tmp_path):
    root = str(tmp_path / 'coco')
    cfg = common.config_from_args(RETINANET, cli(cfg_options={'data_root': root}))
    assert cfg.data_root == root + '/'
    for split in ('train', 'val', 'test'):
        assert cfg[f'{split}_dataloader'].dataset.data_root == root + '/'
    assert cfg.val_evaluator.ann_file == \
        root + '/annotations/instances_val2017.json'
    assert cfg.work_dir == './work_dirs/retinanet_pvt_v2_b2_coco'


def test_missing_dataset_names_path_and_layout(tmp_path):
    cfg = common.config_from_args(RETINANET, cli(
        cfg_options={'data_root': str(tmp_path)}))
    with pytest.raises(DatasetLayoutError) as e:
        check_dataset_layout(cfg, ['train'])
    msg = str(e.value)
    assert 'annotations/instances_train2017.json does not exist' in msg
    assert 'Expected layout' in msg and 'train2017/*.jpg' in msg
    assert '--cfg-options data_root=' in msg


def test_malformed_coco_json(demo_root):
    cfg = common.config_from_args(
        osp.join(REPO_ROOT, 'configs', 'demo', 'retinanet_pvt_v2_b0_demo.py'),
        cli(cfg_options={'data_root': osp.join(demo_root, 'coco')}))
    check_dataset_layout(cfg, ['train', 'val', 'test'])  # the good copy
    ann = osp.join(demo_root, 'coco', 'annotations', 'instances_train.json')
    good = open(ann).read()
    try:
        with open(ann, 'w') as f:
            f.write(good[:len(good) // 2])  # truncated
        with pytest.raises(DatasetLayoutError, match='not valid JSON'):
            check_dataset_layout(cfg, ['train'])
        with open(ann, 'w') as f:
            json.dump({'images': [{'id': 1}]}, f)
        with pytest.raises(DatasetLayoutError,
                           match='no annotations / categories list'):
            check_dataset_layout(cfg, ['train'])
    finally:
        with open(ann, 'w') as f:
            f.write(good)


def _empty(folder):
    import shutil
    for name in os.listdir(folder):
        shutil.rmtree(osp.join(folder, name)) if osp.isdir(
            osp.join(folder, name)) else os.remove(osp.join(folder, name))


def _flatten(folder):
    """Images straight in the split folder, no class sub-folders."""
    import shutil
    for cls in os.listdir(folder):
        for img in os.listdir(osp.join(folder, cls)):
            os.rename(osp.join(folder, cls, img), osp.join(folder, img))
        shutil.rmtree(osp.join(folder, cls))


@pytest.mark.parametrize('config,broken,mutate,message', [
    ('sem_fpn_pvt_v2_b0_demo.py', 'ade/annotations/validation', _empty,
     'annotations/validation is empty'),
    ('cls_pvt_v2_b0_demo.py', 'imagenet/val', _flatten,
     'imagenet/val has no class sub-folders'),
])
def test_empty_segmentation_or_class_folders(demo_root, tmp_path, config,
                                             broken, mutate, message):
    import shutil
    root = str(tmp_path / 'copy')
    shutil.copytree(demo_root, root)
    mutate(osp.join(root, broken))
    sub = broken.split('/')[0]
    cfg = common.config_from_args(
        osp.join(REPO_ROOT, 'configs', 'demo', config),
        cli(cfg_options={'data_root': osp.join(root, sub)}))
    check_dataset_layout(cfg, ['train'])
    with pytest.raises(DatasetLayoutError, match=message):
        check_dataset_layout(cfg, ['val'])


def test_train_cli_fails_before_building_a_model(tmp_path):
    res = subprocess.run(
        [sys.executable, osp.join(TOOLS, 'train.py'), RETINANET,
         '--work-dir', str(tmp_path / 'wd'),
         '--cfg-options', f'data_root={tmp_path}/nowhere/'],
        capture_output=True, text=True, cwd=str(tmp_path))
    assert res.returncode != 0
    assert 'DatasetLayoutError' in res.stderr
    assert f'{tmp_path}/nowhere/' in res.stderr
    assert 'Expected layout' in res.stderr
    assert 'Checkpoints will be saved' not in res.stdout + res.stderr


def test_amp_switch_of_train_and_demo(monkeypatch):
    """``--amp`` (tools/train.py, tools/misc/demo.py) puts MMEngine's
    AmpOptimWrapper with a dynamic loss scale into the config; without
    CUDA it is a clear error, not a silent fp32 run."""
    import torch
    cfg = common.config_from_args(RETINANET, cli())
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(SystemExit, match='--amp needs a CUDA GPU'):
        common.use_amp(cfg)
    assert cfg.optim_wrapper.get('type', 'OptimWrapper') == 'OptimWrapper'
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    common.use_amp(cfg)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'  # the rest is kept
    assert load_tool('misc/demo').parse_args(['--amp']).amp


def test_demo_trains_on_the_gpu_with_amp_when_there_is_one(monkeypatch):
    """``make demo``: CUDA + AMP when torch sees a GPU (``--no-amp``: fp32
    there; ``--cpu``: the CPU in fp32, the GPU hidden before torch looks);
    without a GPU the CPU in fp32, and ``--amp`` is a clear error."""
    import torch
    demo = load_tool('misc/demo')

    def run(*argv):
        cfg, device, amp = demo.demo_config(demo.parse_args(list(argv)))
        wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        assert (wrapper == 'AmpOptimWrapper') == amp
        return device, amp

    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert run() == ('cuda', True)
    assert run('--amp') == ('cuda', True)
    assert run('--no-amp') == ('cuda', False)
    assert run('--cpu') == ('cpu', False)
    with pytest.raises(SystemExit, match='--cpu hides'):
        run('--cpu', '--amp')
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '0')
    demo.hide_gpu_if_asked(demo.parse_args([]))
    assert os.environ['CUDA_VISIBLE_DEVICES'] == '0'
    demo.hide_gpu_if_asked(demo.parse_args(['--cpu']))
    assert os.environ['CUDA_VISIBLE_DEVICES'] == ''

    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert run() == ('cpu', False)
    with pytest.raises(SystemExit, match='--amp needs a CUDA GPU'):
        run('--amp')


def test_cli_argument_errors(tmp_path):
    test_tool = load_tool('test')
    train_tool = load_tool('train')
    with pytest.raises(FileNotFoundError, match='does not exist'):
        common.config_from_args(str(tmp_path / 'nope.py'), cli())
    cfg = common.config_from_args(RETINANET, cli())
    args = train_tool.parse_args([RETINANET, '--amp'])
    import torch
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match='--amp needs a CUDA GPU'):
            train_tool.apply_train_args(cfg, args)
    with pytest.raises(SystemExit, match='no such checkpoint'):
        train_tool.apply_train_args(cfg, train_tool.parse_args(
            [RETINANET, '--resume', str(tmp_path / 'missing.pth')]))
    train_tool.apply_train_args(cfg, train_tool.parse_args(
        [RETINANET, '--resume', '--auto-scale-lr']))
    assert cfg.resume is True and cfg.load_from is None
    assert cfg.auto_scale_lr.enable is True
    with pytest.raises(SystemExit, match='does not exist'):
        test_tool.main([RETINANET, str(tmp_path / 'missing.pth')])
    cfg.default_scope = 'mmocr'
    with pytest.raises(ValueError, match='default_scope'):
        common.init_scope(cfg)


def test_slurm_scripts_compose_srun(tmp_path):
    fake = tmp_path / 'bin'
    fake.mkdir()
    (fake / 'srun').write_text('#!/bin/sh\necho "$@"\n')
    (fake / 'srun').chmod(0o755)
    env = dict(os.environ, PATH=f'{fake}:{os.environ["PATH"]}', GPUS='4')
    res = subprocess.run(
        ['bash', osp.join(TOOLS, 'slurm_train.sh'), 'gpu', 'job1', 'cfg.py',
         'wd', '--amp'], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    out = res.stdout.split()
    for arg in ('-p', 'gpu', '--job-name=job1', '--ntasks=4',
                '--ntasks-per-node=4', '--gres=gpu:4', 'cfg.py',
                '--work-dir=wd', '--launcher=slurm', '--amp'):
        assert arg in out, (arg, out)
    assert osp.join(TOOLS, 'train.py') in out
    res = subprocess.run(
        ['bash', osp.join(TOOLS, 'slurm_test.sh'), 'gpu', 'job2', 'cfg.py',
         'ckpt.pth'], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert 'ckpt.pth --launcher=slurm' in res.stdout
    # The torchrun scripts (through tools/launch.sh like the Slurm ones):
    # a fake interpreter echoes what they would run.
    (fake / 'py').write_text('#!/bin/sh\necho "$@"\n')
    (fake / 'py').chmod(0o755)
    env = dict(env, PYTHON=str(fake / 'py'), NNODES='2', PORT='29999')
    res = subprocess.run(
        ['bash', osp.join(TOOLS, 'dist_test.sh'), 'cfg.py', 'ckpt.pth', '3',
         '--tta'], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [
        '-m', 'torch.distributed.run', '--nnodes=2', '--node_rank=0',
        '--master_addr=127.0.0.1', '--master_port=29999',
        '--nproc_per_node=3', osp.join(TOOLS, 'test.py'), 'cfg.py',
        'ckpt.pth', '--launcher', 'pytorch', '--tta']
    for script in ('dist_train.sh', 'dist_test.sh', 'slurm_train.sh',
                   'slurm_test.sh'):
        res = subprocess.run(['bash', osp.join(TOOLS, script)],
                             capture_output=True, text=True)
        assert res.returncode == 2 and 'usage:' in res.stderr


def test_paper_table(tmp_path, capsys):
    metrics = tmp_path / 'metrics.json'
    metrics.write_text(json.dumps(dict(
        config='configs/mask_rcnn_pvt_v2_b2_coco.py', checkpoint='x.pth',
        metrics={'coco/bbox_mAP': 0.431, 'coco/segm_mAP': 0.40})))
    other = tmp_path / 'other.json'
    other.write_text(json.dumps(dict(config='configs/retinanet_cvt_13_coco.py',
                                     checkpoint='y', metrics={})))
    paper_table = load_tool('analysis_tools/paper_table')
    rows = paper_table.main([str(metrics), str(other), '--markdown'])
    box, mask, cvt = rows
    assert box[1:5] == ('bbox_mAP', pytest.approx(43.1), 45.3,
                        pytest.approx(-2.2))
    assert mask[1:5] == ('segm_mAP', pytest.approx(40.0), 41.2,
                         pytest.approx(-1.2))
    assert 'whai362/PVT' in box[5]
    assert cvt[5] == 'no published result for this config'
    out = capsys.readouterr().out
    assert ('| mask_rcnn_pvt_v2_b2_coco | bbox_mAP | 43.1 | 45.3 | -2.2 |'
            in out)
    bad = tmp_path / 'bad.json'
    bad.write_text('{}')
    with pytest.raises(SystemExit, match='not a tools/test.py metrics file'):
        paper_table.main([str(bad)])


def test_paper_table_code_and_paper_columns(tmp_path):
    """PVTv1 Semantic FPN is published twice (official code / paper):
    one row per column, each with its own source."""
    metrics = tmp_path / 'metrics.json'
    metrics.write_text(json.dumps(dict(
        config='configs/sem_fpn_pvt_v1_small_ade20k_40k.py', checkpoint='x',
        metrics={'mIoU': 41.0})))
    paper_table = load_tool('analysis_tools/paper_table')
    code, paper = paper_table.rows_for(str(metrics))
    assert code[1:5] == ('mIoU', 41.0, 41.9, pytest.approx(-0.9))
    assert paper[1:5] == ('mIoU (paper)', 41.0, 39.8, pytest.approx(1.2))
    assert '"code" column' in code[5] and '"paper" column' in paper[5]


def test_paper_table_flags_a_single_scale_run_of_a_tta_row(tmp_path):
    paper_table = load_tool('analysis_tools/paper_table')
    name = 'configs/sem_fpn_pvt_v1_large_ade20k_160k_tta.py'
    sources = {}
    for tta in (False, True):
        metrics = tmp_path / f'{tta}.json'
        metrics.write_text(json.dumps(dict(config=name, checkpoint='x',
                                           tta=tta, metrics={'mIoU': 44.0})))
        (row, ) = paper_table.rows_for(str(metrics))
        assert row[1:4] == ('mIoU', 44.0, 44.8)
        sources[tta] = row[5]
    assert 'rerun tools/test.py with --tta' in sources[False]
    assert 'WARNING' not in sources[True]


def test_paper_results_name_real_configs():
    from pvt_mm.paper_results import METRIC_KEYS, PAPER_RESULTS
    for name, entry in PAPER_RESULTS.items():
        assert osp.isfile(osp.join(REPO_ROOT, 'configs', name + '.py')), name
        assert entry['source']
        assert set(entry) - {'source'} <= set(METRIC_KEYS), name


def test_demo_data_is_deterministic(tmp_path):
    a = make_demo_data.make_demo_data(str(tmp_path / 'a'), 4, 2)
    b = make_demo_data.make_demo_data(str(tmp_path / 'b'), 4, 2)
    ann = 'coco/annotations/instances_train.json'
    ja, jb = (json.load(open(osp.join(d, ann))) for d in (a, b))
    assert ja == jb
    assert {c['name'] for c in ja['categories']} == set(make_demo_data.CLASSES)
    for item in ja['annotations']:
        x, y, w, h = item['bbox']
        assert w > 0 and h > 0 and 0 < item['area'] <= w * h + 2 * (w + h)
    assert make_demo_data.demo_data_ready(a)


def test_op_trace_compares_dispatched_operators(tmp_path):
    """benchmarks/op_trace.py: the same code gives identical traces; a
    different computation (another input size) is reported, with the
    operators whose counts differ."""
    spec = importlib.util.spec_from_file_location(
        'op_trace', osp.join(REPO_ROOT, 'benchmarks', 'op_trace.py'))
    op_trace = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(op_trace)
    paths = {}
    for tag, size in (('a', '64x64'), ('b', '64x64'), ('c', '64x96')):
        paths[tag] = str(tmp_path / f'{tag}.json')
        assert op_trace.main(['pvtv2_b0', size, paths[tag],
                              '--threads', '1']) == 0
    assert op_trace.main(['--compare', paths['a'], paths['b']]) == 0
    # negative control: a different computation is caught
    assert op_trace.main(['--compare', paths['a'], paths['c']]) == 1
    with open(paths['a']) as f:
        traces = json.load(f)['traces']
    assert set(traces) == {'fwd', 'fwd+bwd'}
    assert len(traces['fwd+bwd']) > 2 * len(traces['fwd']) > 0
    assert any('convolution_backward' in op for op in traces['fwd+bwd'])
