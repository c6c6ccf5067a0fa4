"""Reliability end to end, across processes: a training process killed with
SIGKILL (mid-run, and in the middle of writing a checkpoint) resumes to the
same weights as an uninterrupted run; 2-process DDP on CPU (gloo) trains in
step with single-process training and evaluates to the same metrics.

The toy task comes from tests/engine/toy_task.py; the ``slow`` tests run
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

from helpers import REPO_ROOT, scaled_mismatches
from toy_task import (assert_same_weights, last_checkpoint, run_toy, toy_cfg,
                      weights)

TESTS_DIR = osp.dirname(osp.abspath(__file__))
# children import toy_task (here) and helpers (tests/)
CHILD_PATH = os.pathsep.join([TESTS_DIR, osp.dirname(TESTS_DIR)])
PY = sys.executable

pytestmark = pytest.mark.usefixtures('one_thread')


def run_child(code: str, *args, timeout=300, **kwargs):
    """Run ``code`` in a fresh interpreter that can import the test modules."""
    env = dict(os.environ, PYTHONPATH=CHILD_PATH, OMP_NUM_THREADS='1')
    return subprocess.run([PY, '-c', textwrap.dedent(code), *args], env=env,
                          capture_output=True, text=True, timeout=timeout,
                          cwd=REPO_ROOT, **kwargs)


# Children use one thread like the parent (test_reliability.py's
# fixture): bit-identical results need the same thread count.
TRAIN_TOY = '''
import json, sys
import torch
import toy_task as T
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
import toy_task as T
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
import torch.distributed as dist
from mmengine.config import Config
from mmengine.dist import get_rank, get_world_size
from mmengine.runner import Runner
import toy_task  # noqa: F401  (registers the toy task)
from pvt_mm.engine import prepare_config

torch.set_num_threads(1)


def all_reduce(buf):
    fut = dist.all_reduce(buf, async_op=True).get_future()
    return fut.then(lambda f: f.value()[0])


# Broken gradient synchronisation, for the negative controls: DDP's own
# hook divides each bucket by the world size, then sums it over ranks.
FAULTS = {
    'summed': lambda state, bucket: all_reduce(bucket.buffer()),
    'rank1_dropped': lambda state, bucket: all_reduce(
        bucket.buffer().mul_(0.0 if get_rank() == 1 else 0.5)),
}

for fault, cfg in json.loads(sys.argv[1]).items():
    cfg = Config(cfg)
    cfg.launcher = 'pytorch'
    prepare_config(cfg)
    runner = Runner.from_cfg(cfg)
    if fault in FAULTS:
        runner.model.register_comm_hook(None, FAULTS[fault])
    runner.train()
    metrics = runner.val_loop.run()
    assert get_world_size() == 2
    params = torch.cat([p.detach().flatten()
                        for p in runner.model.parameters()])
    gathered = [torch.zeros_like(params) for _ in range(2)]
    dist.all_gather(gathered, params)
    assert torch.equal(gathered[0], gathered[1]), 'ranks diverged'
    if get_rank() == 0:
        print('METRICS', fault,
              json.dumps({k: float(v) for k, v in metrics.items()}))
# Leave the group cleanly: a gloo group still alive at interpreter exit can
# abort the process ('terminate called without an active exception').
dist.barrier()
dist.destroy_process_group()
'''


def ddp_toy_cfg(work_dir, batch_size):
    """No drop-path, dropout or flips: 2 processes x batch 1 then see the
    same samples per step as 1 process x batch 2 (DefaultSampler
    interleaves ranks), so they must take the same steps.

    Plain SGD with momentum, not the toy task's AdamW: SGD's update is a
    fixed linear combination of the gradients, so two runs whose gradients
    agree to rounding error take steps that agree to rounding error. AdamW
    divides by sqrt(v): for a weight whose exact gradient is zero (the key
    half of ``attn.kv.bias``: softmax ignores a constant added to every key
    score) it turns rounding noise into lr-sized steps whose sign depends
    on the CPU's reduction order.
    """
    cfg = toy_cfg(work_dir, max_iters=4, interval=4, batch_size=batch_size,
                  model=dict(dropout=0.0,
                             backbone=dict(drop_path_rate=0.0)),
                  dataset=dict(flip=False),
                  optim_wrapper=dict(optimizer=dict(
                      type='SGD', lr=0.05, momentum=0.9)),
                  custom_hooks=[dict(type='RelSaveInitialWeightsHook')])
    # 15 validation images: uneven across 2 ranks, so the sampler pads one.
    # Batch 1 everywhere: every image is evaluated by the same computation.
    cfg['val_dataloader']['dataset']['num'] = 15
    cfg['val_dataloader']['batch_size'] = 1
    return cfg


# Two fp32 runs whose gradients differ only in summation order (one
# process sums the batch inside its kernels; DDP sums per-rank gradients)
# agree to a relative error of about K * u per layer, K <= 128 summed terms
# (8x8 tokens x batch 2 in the toy model), u = 2**-24: ~1e-5. SGD steps
# are linear in the gradients, so the 4-step weight updates agree to the
# same relative order; UPDATE_RTOL leaves a factor ~100 for propagation
# through layers and steps. A weight whose exact gradient is zero moves
# only by rounding noise (~u x the largest gradient): UPDATE_ATOL, relative
# to the largest update of any weight. Broken synchronisation is off by
# O(1): summing instead of averaging doubles every update (relative error
# 1), dropping a rank's gradient leaves |g1| / |g0 + g1|.
UPDATE_RTOL = 1e-3
UPDATE_ATOL = 1e-4


def update_mismatches(initial, reference, other):
    """Tensors whose update ``other - initial`` differs from
    ``reference - initial`` beyond the tolerances above, with the
    observed error relative to the tensor's own update."""
    ref = {k: reference[k] - initial[k] for k in initial
           if initial[k].is_floating_point()}
    assert any(d.abs().max() > 0 for d in ref.values()), \
        'the reference run did not train'
    return scaled_mismatches(ref, {k: other[k] - initial[k] for k in ref},
                             UPDATE_RTOL, UPDATE_ATOL)


def test_ddp_gloo_matches_single_process(tmp_path):
    """2 gloo processes x batch 1 take the same SGD steps as 1 process x
    batch 2 and evaluate to the same metrics; the same comparison flags
    DDP with gradients summed instead of averaged, or one rank's
    gradients dropped (negative controls, run in the same launch)."""
    runs = ('ok', 'summed', 'rank1_dropped')
    cfgs = {run: ddp_toy_cfg(tmp_path / run, batch_size=1) for run in runs}
    env = dict(os.environ, PYTHONPATH=CHILD_PATH, OMP_NUM_THREADS='1')
    script = tmp_path / 'ddp_toy.py'
    script.write_text(textwrap.dedent(DDP_TOY))
    res = subprocess.run(
        [PY, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
         '--master_port', str(free_port()), str(script), json.dumps(cfgs)],
        env=env, capture_output=True, text=True, timeout=400, cwd=REPO_ROOT)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    ddp_metrics = {}
    for line in res.stdout.splitlines():
        if line.startswith('METRICS'):
            _, run, values = line.split(' ', 2)
            ddp_metrics[run] = json.loads(values)
    assert set(ddp_metrics) == set(runs)
    assert ddp_metrics['ok']['count'] == 15  # padding removed in gathering

    # The DDP checkpoint, evaluated by one process with the same batch per
    # process (the same computation for every image): the same metrics.
    ckpt = osp.join(tmp_path, 'ok', 'iter_4.pth')
    evaluator = Runner.from_cfg(Config(dict(
        ddp_toy_cfg(tmp_path / 'eval', batch_size=1), load_from=ckpt)))
    evaluator.load_or_resume()
    single_metrics = {k: float(v) for k, v in evaluator.val_loop.run().items()}
    assert single_metrics == ddp_metrics['ok']

    # One process with the same global batch: the same start, the same
    # steps (to rounding) and the same metrics (to what those steps move).
    single = run_toy(ddp_toy_cfg(tmp_path / 'single', batch_size=2))
    initial = torch.load(osp.join(tmp_path, 'single', 'initial.pth'))
    ddp = {run: torch.load(osp.join(tmp_path, run, 'iter_4.pth'))
           ['state_dict'] for run in runs}
    assert_same_weights(
        initial, torch.load(osp.join(tmp_path, 'ok', 'initial.pth')))
    assert update_mismatches(initial, weights(single), ddp['ok']) == {}
    single_trained = {k: float(v) for k, v in single.val_loop.run().items()}
    assert single_trained['count'] == 15
    assert single_trained['mean_top_prob'] == pytest.approx(
        ddp_metrics['ok']['mean_top_prob'], abs=1e-4)

    # Negative controls: the comparison catches broken synchronisation in
    # (nearly) every tensor, with errors of order 1, not borderline ones.
    compared = sum(v.is_floating_point() for v in initial.values())
    for run in ('summed', 'rank1_dropped'):
        bad = update_mismatches(initial, weights(single), ddp[run])
        assert len(bad) >= 0.9 * compared, (run, len(bad), compared)
        assert sorted(bad.values())[len(bad) // 2] > 0.1, run


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
    duplicate, which must not count). Testing uses batch 1, so that every
    image goes through the same computation in both runs (batch 2 pairs
    different images per rank, and the kernels a batch picks may differ
    in the last bits, enough to reorder near-tied detections)."""
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
                   '--metrics-out', path, *options,
                   'test_dataloader.batch_size=1', launcher=launcher))
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
