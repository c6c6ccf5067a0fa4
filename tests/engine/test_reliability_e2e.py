"""Reliability end to end, across processes: a training process killed with
SIGKILL (mid-run, and in the middle of writing a checkpoint) resumes to the
same weights as an uninterrupted run; 2-process DDP on CPU (gloo) trains in
step with single-process training and evaluates to the same metrics.

The toy task comes from tests/test_reliability.py; the ``slow`` tests run
the same scenarios through tools/train.py and tools/test.py on the demo
detection config and generated demo data.
"""
import json
import os
import os.path as osp
import signal
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from conftest import REPO_ROOT
from test_reliability import (assert_same_weights, last_checkpoint, run_toy,
                              toy_cfg, weights)

TESTS_DIR = osp.dirname(osp.abspath(__file__))
# children import test_reliability (here) and conftest (tests/)
CHILD_PATH = os.pathsep.join([TESTS_DIR, osp.dirname(TESTS_DIR)])
PY = sys.executable

pytestmark = pytest.mark.usefixtures('one_thread')


def run_child(code: str, *args, timeout=300, **kwargs):
    """Run ``code`` in a fresh interpreter that can import the test modules."""
    env = dict(os.environ, PYTHONPATH=CHILD_PATH, OMP_NUM_THREADS='1')
    return subprocess.run([PY, '-c', textwrap.dedent(code), *args], env=env,
                          capture_output=True, text=True, timeout=timeout,
                          cwd=REPO_ROOT, **kwargs)


# Children use one thread like the parent (tests/test_reliability.py's
# fixture): bit-identical results need the same thread count.
TRAIN_TOY = '''
import json, sys
import torch
import test_reliability as T
torch.set_num_threads(1)
T.run_toy(json.loads(sys.argv[1]))
'''


def test_sigkill_mid_training_then_resume_equals_uninterrupted(tmp_path):
    steps = 7
    killed = run_child(TRAIN_TOY, json.dumps(toy_cfg(
        tmp_path / 'cut', max_iters=steps, custom_hooks=[dict(
            type='RelStopAtIterHook', iter=5, sigkill=True)])))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert last_checkpoint(tmp_path / 'cut').endswith('iter_4.pth')
    resumed = run_toy(toy_cfg(tmp_path / 'cut', max_iters=steps, resume=True))
    full = run_toy(toy_cfg(tmp_path / 'full', max_iters=steps))
    assert resumed.iter == full.iter == steps
    assert_same_weights(weights(full), weights(resumed))


KILL_WHILE_SAVING = '''
import builtins, json, os, signal, sys
import torch
import test_reliability as T
torch.set_num_threads(1)
real_open, seen = builtins.open, []

def open_then_die(file, mode='r', *args, **kwargs):
    """The 2nd checkpoint write stores half its bytes, then SIGKILL."""
    f = real_open(file, mode, *args, **kwargs)
    if 'w' in mode and '.pth' in os.path.basename(str(file)):
        seen.append(file)
        if len(seen) == 2:
            def write(data, _write=f.write):
                _write(data[:len(data) // 2])
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            f.write = write
    return f

builtins.open = open_then_die
T.run_toy(json.loads(sys.argv[1]))
'''


def test_sigkill_while_saving_a_checkpoint_then_resume(tmp_path):
    """Killed half-way through writing iter_4.pth (max_keep_ckpts=1, so
    MMEngine's own hook would already have deleted iter_2.pth):
    last_checkpoint still names the complete iter_2.pth, the partial file
    is a temporary that the resumed run removes, and the result equals an
    uninterrupted run."""
    work = tmp_path / 'cut'
    hook = dict(type='pvt_mm.AtomicCheckpointHook', interval=2,
                by_epoch=False, max_keep_ckpts=1)
    killed = run_child(KILL_WHILE_SAVING, json.dumps(toy_cfg(
        work, max_iters=6, checkpoint=hook)))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert last_checkpoint(work).endswith('iter_2.pth')
    assert torch.load(osp.join(work, 'iter_2.pth'))['meta']['iter'] == 2
    leftovers = [n for n in os.listdir(work) if n.startswith('iter_4')]
    assert len(leftovers) == 1 and '.tmp-' in leftovers[0]

    resumed = run_toy(toy_cfg(work, max_iters=6, checkpoint=hook,
                              resume=True))
    assert not [n for n in os.listdir(work) if '.tmp-' in n]
    assert sorted(n for n in os.listdir(work) if n.endswith('.pth')) == \
        ['iter_6.pth']
    full = run_toy(toy_cfg(tmp_path / 'full', max_iters=6, checkpoint=hook))
    assert_same_weights(weights(full), weights(resumed))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


DDP_TOY = '''
import json, sys
import torch
from mmengine.config import Config
from mmengine.dist import get_rank, get_world_size
from mmengine.runner import Runner
import test_reliability  # noqa: F401  (registers the toy task)
from pvt_mm.engine import prepare_config

torch.set_num_threads(1)

cfg = Config(json.loads(sys.argv[1]))
cfg.launcher = 'pytorch'
prepare_config(cfg)
runner = Runner.from_cfg(cfg)
runner.train()
metrics = runner.val_loop.run()
assert get_world_size() == 2
params = torch.cat([p.detach().flatten() for p in runner.model.parameters()])
gathered = [torch.zeros_like(params) for _ in range(2)]
torch.distributed.all_gather(gathered, params)
assert torch.equal(gathered[0], gathered[1]), 'ranks diverged'
if get_rank() == 0:
    print('METRICS', json.dumps({k: float(v) for k, v in metrics.items()}))
# Leave the group cleanly: a gloo group still alive at interpreter exit can
# abort the process ('terminate called without an active exception').
torch.distributed.barrier()
torch.distributed.destroy_process_group()
'''


def ddp_toy_cfg(work_dir, batch_size):
    """No drop-path, dropout or flips: 2 processes x batch 1 then see the
    same samples per step as 1 process x batch 2 (DefaultSampler
    interleaves ranks), so their weights must agree."""
    cfg = toy_cfg(work_dir, max_iters=4, interval=4, batch_size=batch_size,
                  model=dict(dropout=0.0,
                             backbone=dict(drop_path_rate=0.0)),
                  dataset=dict(flip=False))
    # 15 validation images: uneven across 2 ranks, so the sampler pads one.
    cfg['val_dataloader']['dataset']['num'] = 15
    return cfg


def test_ddp_gloo_matches_single_process(tmp_path):
    ddp_work = tmp_path / 'ddp'
    env = dict(os.environ, PYTHONPATH=CHILD_PATH, OMP_NUM_THREADS='1')
    script = tmp_path / 'ddp_toy.py'
    script.write_text(textwrap.dedent(DDP_TOY))
    res = subprocess.run(
        [PY, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
         '--master_port', str(free_port()), str(script),
         json.dumps(ddp_toy_cfg(ddp_work, batch_size=1))],
        env=env, capture_output=True, text=True, timeout=400, cwd=REPO_ROOT)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    line = next(ln for ln in res.stdout.splitlines()
                if ln.startswith('METRICS'))
    ddp_metrics = json.loads(line.split(' ', 1)[1])
    assert ddp_metrics['count'] == 15  # padding removed when gathering

    # The DDP checkpoint, evaluated by one process with the same batch
    # size per process: exactly the same metrics.
    ckpt = osp.join(ddp_work, 'iter_4.pth')
    evaluator = Runner.from_cfg(Config(dict(
        ddp_toy_cfg(tmp_path / 'eval', batch_size=1), load_from=ckpt)))
    evaluator.load_or_resume()
    single_metrics = {k: float(v) for k, v in evaluator.val_loop.run().items()}
    assert single_metrics == ddp_metrics

    # One process with the same global batch trains in step with DDP.
    single = run_toy(ddp_toy_cfg(tmp_path / 'single', batch_size=2))
    ddp_weights = torch.load(ckpt)['state_dict']
    for k, v in weights(single).items():
        torch.testing.assert_close(ddp_weights[k], v, rtol=1e-4, atol=1e-5,
                                   msg=f'{k} differs from DDP')


# ------------------------------------------------- CLI on the demo config
DEMO_CONFIG = osp.join(REPO_ROOT, 'configs', 'demo',
                       'retinanet_pvt_v2_b0_demo.py')


@pytest.fixture(scope='module')
def demo_data(tmp_path_factory):
    if not osp.isfile(DEMO_CONFIG):
        pytest.skip('configs/demo/retinanet_pvt_v2_b0_demo.py not present')
    out = tmp_path_factory.mktemp('demo_data')
    res = run_child('''
        import runpy, sys
        sys.argv = ['make_demo_data.py'] + sys.argv[1:]
        runpy.run_path('tools/misc/make_demo_data.py', run_name='__main__')
    ''', '--out', str(out), '--num-train', '8', '--num-val', '5',
        '--size', '96')
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def tiny_demo_config(tmp_path, data):
    """The demo config, 3 short epochs on the tiny data, with pvt_mm's
    hooks as a user config would enable them."""
    path = tmp_path / 'tiny_demo.py'
    path.write_text(textwrap.dedent(f'''
        _base_ = {DEMO_CONFIG!r}
        train_dataloader = dict(batch_size=2, num_workers=0)
        val_dataloader = dict(batch_size=2, num_workers=0)
        test_dataloader = val_dataloader
        train_cfg = dict(max_epochs=3, val_interval=3)
        default_hooks = dict(
            logger=dict(interval=1),
            checkpoint=dict(type='pvt_mm.AtomicCheckpointHook', interval=1,
                            max_keep_ckpts=2))
        custom_hooks = [dict(type='pvt_mm.NonFiniteLossHook'),
                        dict(type='pvt_mm.IterationSeedHook')]
    '''))
    return str(path), ['--cfg-options', f'data_root={data}/coco/']


def cli(tool, *args, launcher=None, **kwargs):
    cmd = [PY, osp.join(REPO_ROOT, 'tools', tool), *args]
    if launcher:
        cmd = [PY, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
               '--master_port', str(free_port()), *cmd[1:],
               '--launcher', 'pytorch']
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            **kwargs)


def finish(proc, timeout=600):
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


@pytest.mark.slow
def test_cli_sigkill_then_resume_equals_uninterrupted(tmp_path, demo_data):
    import time
    cfg, options = tiny_demo_config(tmp_path, demo_data)
    full_dir, cut_dir = str(tmp_path / 'full'), str(tmp_path / 'cut')
    finish(cli('train.py', cfg, '--work-dir', full_dir, *options))

    proc = cli('train.py', cfg, '--work-dir', cut_dir, *options)
    deadline = time.time() + 600
    while not (osp.exists(osp.join(cut_dir, 'last_checkpoint'))
               and last_checkpoint(cut_dir).endswith('epoch_1.pth')):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)  # somewhere in epoch 2
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not osp.exists(osp.join(cut_dir, 'epoch_3.pth'))

    out = finish(cli('train.py', cfg, '--work-dir', cut_dir, '--resume',
                     *options))
    assert 'resumed epoch: 1' in out
    a = torch.load(osp.join(full_dir, 'epoch_3.pth'))
    b = torch.load(osp.join(cut_dir, 'epoch_3.pth'))
    assert a['meta']['iter'] == b['meta']['iter']
    for k in a['state_dict']:
        assert torch.equal(a['state_dict'][k], b['state_dict'][k]), k


@pytest.mark.slow
def test_cli_ddp_gloo_metric_equals_single_process(tmp_path, demo_data):
    """tools/train.py with 2 gloo processes trains the demo detector;
    tools/test.py on its checkpoint gives the same COCO metrics with 2
    processes as with 1 (5 validation images: one rank gets a padded
    duplicate, which must not count)."""
    cfg, options = tiny_demo_config(tmp_path, demo_data)
    # Keep every detection: the briefly trained model scores below 0.05.
    options.append('model.test_cfg.score_thr=0.0')
    work = str(tmp_path / 'ddp')
    out = finish(cli('train.py', cfg, '--work-dir', work, *options,
                     launcher='pytorch'))
    assert 'Distributed training: True' in out
    ckpt = osp.join(work, 'epoch_3.pth')
    metrics = {}
    for name, launcher in (('ddp', 'pytorch'), ('single', None)):
        path = str(tmp_path / f'{name}.json')
        finish(cli('test.py', cfg, ckpt, '--work-dir', str(tmp_path / name),
                   '--metrics-out', path, *options, launcher=launcher))
        with open(path) as f:
            metrics[name] = json.load(f)['metrics']
    assert metrics['single']['coco/bbox_mAP_50'] > 0  # an informative check
    assert metrics['ddp'] == metrics['single']


@pytest.mark.slow
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_autocast_demo_detector_steps_stay_finite(tmp_path, demo_data, dtype):
    """RetinaNet + PVTv2-B0 of the demo config, trained for a few steps on
    the demo data under CPU autocast: every loss term and weight finite."""
    from mmdet.utils import register_all_modules
    register_all_modules()
    import pvt_mm  # noqa: F401  (custom_imports)
    cfg_path, _ = tiny_demo_config(tmp_path, demo_data)
    cfg = Config.fromfile(cfg_path)
    cfg.work_dir = str(tmp_path / 'work')
    for split in ('train', 'val', 'test'):
        loader = cfg[f'{split}_dataloader']
        loader.dataset.data_root = f'{demo_data}/coco/'
    runner = Runner.from_cfg(cfg)
    model = runner.model
    optim = runner.build_optim_wrapper(runner.optim_wrapper)
    data = iter(runner.train_loop.dataloader)
    for _ in range(3):
        batch = model.data_preprocessor(next(data), True)
        with torch.autocast('cpu', dtype=dtype):
            losses = model(**batch, mode='loss')
        loss, log_vars = model.parse_losses(losses)
        assert all(torch.isfinite(torch.as_tensor(v)) for v in
                   log_vars.values()), log_vars
        optim.update_params(loss)
    assert all(torch.isfinite(p).all() for p in model.parameters())
