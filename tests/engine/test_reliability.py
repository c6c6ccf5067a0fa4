"""Reliability of training with pvt_mm (in-process, fast): resuming under
torch's weights_only loading, atomic checkpoints, exact resume, non-finite
loss detection, autocast, and clear errors for bad configs.

The toy task (a tiny PVTv2 + linear head on synthetic images) lives in
tests/engine/toy_task.py, shared with tests/engine/test_reliability_e2e.py.
"""
import builtins
import glob
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

import pvt_mm.engine  # noqa: F401  (safe loading + hooks)
from pvt_mm.engine import ConfigError, prepare_config
from pvt_mm.models import CheckpointError

from helpers import REPO_ROOT
from toy_task import (assert_same_weights, last_checkpoint, run_toy, toy_cfg,
                      weights)

# The toy model is tiny: one thread avoids OpenMP overhead (and contention
# when the machine is busy).
pytestmark = pytest.mark.usefixtures('one_thread')


# ------------------------------------------------ resume under weights_only
def test_mmengine_checkpoint_needs_the_allowlist(tmp_path):
    """A plain torch >= 2.6 process refuses MMEngine's own checkpoint
    (numpy arrays, HistoryBuffer); after ``import pvt_mm.engine`` the same
    file loads with weights_only=True and holds the full training state."""
    run_toy(toy_cfg(tmp_path, max_iters=2))
    ckpt = osp.join(tmp_path, 'iter_2.pth')
    plain = subprocess.run(
        [sys.executable, '-c', f'import torch; torch.load({ckpt!r})'],
        capture_output=True, text=True)
    assert plain.returncode != 0 and 'Weights only load failed' in plain.stderr
    loaded = torch.load(ckpt, weights_only=True)
    assert {'meta', 'state_dict', 'message_hub', 'optimizer',
            'param_schedulers'} <= set(loaded)
    assert loaded['meta']['iter'] == 2
    np.testing.assert_array_equal(loaded['meta']['dataset_meta']['palette'],
                                  np.eye(3))
    assert loaded['message_hub']['log_scalars']['train/loss'].mean() > 0


def test_resume_restores_the_full_training_state(tmp_path):
    first = run_toy(toy_cfg(tmp_path, max_iters=4))
    resumed = Runner.from_cfg(Config(toy_cfg(tmp_path, max_iters=4,
                                             resume=True)))
    resumed.load_or_resume()
    assert resumed.iter == 4
    assert_same_weights(weights(first), weights(resumed))
    sa = first.optim_wrapper.state_dict()['state']
    sb = resumed.optim_wrapper.state_dict()['state']
    assert all(torch.equal(sa[i]['exp_avg'], sb[i]['exp_avg']) for i in sa)
    assert resumed.message_hub.get_scalar('train/loss').current() == \
        first.message_hub.get_scalar('train/loss').current()
    assert [s.last_step for s in resumed.param_schedulers] == \
        [s.last_step for s in first.param_schedulers]


@pytest.mark.parametrize('by_epoch', [False, True])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, by_epoch):
    """Interrupt in iteration/epoch 3 (last checkpoint: 2), resume, and
    finish with bit-identical weights and metrics (drop-path, dropout and
    random flips all active)."""
    steps = 4
    # by_epoch: 6 images, batch 2 -> 3 iterations per epoch.
    common = dict(max_iters=steps, by_epoch=by_epoch,
                  dataset=dict(num=6) if by_epoch else None)
    full = run_toy(toy_cfg(tmp_path / 'full', **common))
    stop = dict(type='RelStopAtIterHook', iter=3 * 3 if by_epoch else 3)
    with pytest.raises(KeyboardInterrupt):
        run_toy(toy_cfg(tmp_path / 'cut', custom_hooks=[stop], **common))
    assert last_checkpoint(tmp_path / 'cut').endswith(
        'epoch_2.pth' if by_epoch else 'iter_2.pth')
    resumed = run_toy(toy_cfg(tmp_path / 'cut', resume=True, **common))
    assert_same_weights(weights(full), weights(resumed))
    assert full.val_loop.run() == resumed.val_loop.run()


def test_without_iteration_seeds_a_resumed_run_diverges(tmp_path):
    """Why IterationSeedHook exists: MMEngine does not restore the random
    generators, so drop-path/dropout/flips differ after a resume."""
    full = run_toy(toy_cfg(tmp_path / 'full', seed_hook=False))
    with pytest.raises(KeyboardInterrupt):
        run_toy(toy_cfg(tmp_path / 'cut', seed_hook=False, custom_hooks=[
            dict(type='RelStopAtIterHook', iter=3)]))
    resumed = run_toy(toy_cfg(tmp_path / 'cut', seed_hook=False, resume=True))
    a, b = weights(full), weights(resumed)
    assert any(not torch.equal(a[k], b[k]) for k in a)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


def test_resume_refuses_a_checkpoint_with_a_code_payload(tmp_path):
    run_toy(toy_cfg(tmp_path, max_iters=2))
    ckpt = osp.join(tmp_path, 'iter_2.pth')
    state = torch.load(ckpt, weights_only=True)
    marker = tmp_path / 'pwned'
    state['meta']['note'] = _Payload(marker)
    torch.save(state, ckpt)
    runner = Runner.from_cfg(Config(toy_cfg(tmp_path, max_iters=4,
                                            resume=True)))
    with pytest.raises(CheckpointError) as e:
        runner.load_or_resume()
    assert ckpt in str(e.value) and 'could run code' in str(e.value)
    assert 'system' in str(e.value)
    assert not marker.exists()


def test_getattr_is_allowed_only_for_history_buffer_statistics(tmp_path):
    from mmengine.logging import HistoryBuffer

    class Sneaky:
        def __reduce__(self):
            return getattr, (HistoryBuffer, '__init__')

    path = str(tmp_path / 'sneaky.pth')
    torch.save({'x': Sneaky()}, path)
    with pytest.raises(CheckpointError, match='getattr'):
        pvt_mm.engine.load_from_local(path)


@pytest.mark.parametrize('damage', ['truncated', 'garbage'])
def test_resume_from_a_broken_checkpoint_names_the_file(tmp_path, damage):
    run_toy(toy_cfg(tmp_path, max_iters=2))
    ckpt = osp.join(tmp_path, 'iter_2.pth')
    data = open(ckpt, 'rb').read()
    with open(ckpt, 'wb') as f:
        f.write(data[:len(data) // 2] if damage == 'truncated'
                else b'not a checkpoint' * 10)
    runner = Runner.from_cfg(Config(toy_cfg(tmp_path, max_iters=4,
                                            resume=True)))
    with pytest.raises(CheckpointError,
                       match=f'cannot read checkpoint {ckpt}.*truncated'):
        runner.load_or_resume()


def test_resume_from_a_missing_file_says_so(tmp_path):
    missing = str(tmp_path / 'iter_9.pth')
    runner = Runner.from_cfg(Config(toy_cfg(tmp_path, resume=True,
                                            load_from=missing)))
    with pytest.raises(FileNotFoundError, match=f'checkpoint {missing} does'):
        runner.load_or_resume()


# ------------------------------------------------------- atomic checkpoints
class _FailingWrite:
    """Replaces ``open``: the ``n``-th write of a ``.pth`` file stores half
    the bytes and then raises (an in-process stand-in for a crash)."""

    def __init__(self, n):
        self.n, self.seen, self.real = n, 0, builtins.open

    def __call__(self, file, mode='r', *args, **kwargs):
        f = self.real(file, mode, *args, **kwargs)
        if 'w' in mode and '.pth' in osp.basename(str(file)):
            self.seen += 1
            if self.seen == self.n:
                def write(data, _write=f.write):
                    _write(data[:len(data) // 2])
                    f.flush()
                    raise OSError('simulated crash while saving')
                f.write = write
        return f


@pytest.mark.parametrize('hook', ['pvt_mm.AtomicCheckpointHook',
                                  'CheckpointHook'])
def test_crash_while_saving(tmp_path, monkeypatch, hook):
    """A crash while writing the 2nd checkpoint (max_keep_ckpts=1): with
    AtomicCheckpointHook, last_checkpoint still names a complete file and
    no partial file exists; MMEngine's hook has already deleted it."""
    cfg = toy_cfg(tmp_path, max_iters=6, checkpoint=dict(
        type=hook, interval=2, by_epoch=False, max_keep_ckpts=1))
    runner = Runner.from_cfg(Config(cfg))
    monkeypatch.setattr(builtins, 'open', _FailingWrite(2))
    with pytest.raises(OSError, match='simulated crash'):
        runner.train()
    monkeypatch.undo()
    named = last_checkpoint(tmp_path)
    assert named.endswith('iter_2.pth')
    if hook == 'CheckpointHook':  # the failure mode this hook exists for
        assert not osp.exists(named)
        return
    assert torch.load(named, weights_only=True)['meta']['iter'] == 2
    assert sorted(os.listdir(tmp_path)) == sorted(
        n for n in os.listdir(tmp_path) if '.tmp-' not in n)
    assert not osp.exists(osp.join(tmp_path, 'iter_4.pth'))


def test_old_checkpoints_are_rotated_after_the_new_one_is_saved(tmp_path):
    run_toy(toy_cfg(tmp_path, max_iters=6, checkpoint=dict(
        type='pvt_mm.AtomicCheckpointHook', interval=2, by_epoch=False,
        max_keep_ckpts=2)))
    assert sorted(osp.basename(p) for p in glob.glob(
        osp.join(tmp_path, '*.pth'))) == ['iter_4.pth', 'iter_6.pth']
    assert last_checkpoint(tmp_path).endswith('iter_6.pth')


# --------------------------------------------------------------- numerics
def test_non_finite_loss_stops_training_naming_iteration_and_terms(tmp_path):
    cfg = toy_cfg(tmp_path, max_iters=6, interval=1,
                  model=dict(poison_iter=3))
    with pytest.raises(FloatingPointError) as e:
        run_toy(cfg)
    msg = str(e.value)
    assert 'iteration 3' in msg and 'loss_cls' in msg and 'nan' in msg
    assert 'loss_aux=' in msg  # the finite terms are listed too
    saved = sorted(osp.basename(p) for p in glob.glob(
        osp.join(tmp_path, '*.pth')))
    assert saved == ['iter_1.pth', 'iter_2.pth']  # nothing diverged saved


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_autocast_training_steps_stay_finite(tmp_path, dtype):
    """Training steps of the toy task under CPU autocast (the backbone's
    attention and linears run in low precision) keep finite losses and
    weights and learn something."""
    cfg = toy_cfg(tmp_path, max_iters=8, interval=100)
    runner = Runner.from_cfg(Config(cfg))
    model = runner.model
    optim = runner.build_optim_wrapper(runner.optim_wrapper)
    runner.train_loop  # noqa: B018  (builds the dataloader)
    batch = next(iter(runner.train_dataloader))
    losses = []
    for _ in range(8):
        with torch.autocast('cpu', dtype=dtype):
            out = model(**model.data_preprocessor(batch, True), mode='loss')
            assert model.head(torch.zeros(1, 16)).dtype == dtype
        loss = sum(out.values())
        optim.update_params(loss)
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert losses[-1] < losses[0]


# ------------------------------------------------- bad configs, user side
def det_cfg(**backbone):
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs',
                                   'retinanet_pvt_v2_b0_coco.py'))
    cfg.model.backbone.update(backbone)
    return cfg


def build_det_model(cfg):
    from mmdet.registry import MODELS as DET_MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    import pvt_mm  # noqa: F401  (custom_imports)
    return DET_MODELS.build(cfg.model)


@pytest.mark.parametrize('kwarg, value', [('depth', 50), ('style', 'pytorch')])
def test_resnet_kwargs_in_a_detector_config_are_a_type_error(kwarg, value):
    with pytest.raises(TypeError, match=f'unexpected argument.*{kwarg}'):
        build_det_model(det_cfg(**{kwarg: value}))


@pytest.mark.parametrize('backbone, match', [
    (dict(arch='b9'), "unknown arch 'b9'. Valid: 'b0', 'b1'"),
    (dict(out_indices=(0, 4)), r'out_indices \(0, 4\) out of range'),
    (dict(frozen_stages=4), 'frozen_stages=4 out of range'),
])
def test_out_of_range_backbone_settings_in_a_detector_config(backbone, match):
    with pytest.raises(ValueError, match=match):
        build_det_model(det_cfg(**backbone))


def test_unknown_pvt_mm_type_lists_the_registered_names(tmp_path):
    cfg = Config(toy_cfg(tmp_path))
    cfg.model.backbone = dict(type='pvt_mm.PVTv9')
    with pytest.raises(ConfigError) as e:
        prepare_config(cfg)
    msg = str(e.value)
    assert "model.backbone.type='pvt_mm.PVTv9'" in msg
    assert "did you mean 'pvt_mm.PVTv2'" in msg
    for name in ('PVTv1', 'PVTv2', 'CvT', 'AtomicCheckpointHook'):
        assert name in msg
    cfg = Config(toy_cfg(tmp_path, custom_hooks=[dict(
        type='pvt_mm.NonFiniteLosHook')]))
    with pytest.raises(ConfigError, match="mean 'pvt_mm.NonFiniteLossHook'"):
        prepare_config(cfg)


def test_missing_dataset_paths_are_reported_before_training(tmp_path):
    cfg = det_cfg()
    cfg.train_dataloader.dataset.data_root = str(tmp_path / 'nowhere')
    with pytest.raises(FileNotFoundError,
                       match=r"train_dataloader.dataset .*data_root=.*nowhere"):
        prepare_config(cfg)
    (tmp_path / 'coco' / 'train2017').mkdir(parents=True)
    for split in ('train', 'val', 'test'):
        getattr(cfg, f'{split}_dataloader').dataset.data_root = \
            str(tmp_path / 'coco')
    with pytest.raises(FileNotFoundError, match=r'ann_file=.*instances_train'):
        prepare_config(cfg)


def test_wrong_channel_count_fails_at_the_first_iteration(tmp_path):
    cfg = toy_cfg(tmp_path, model=dict(backbone=dict(in_channels=4)))
    with pytest.raises(ValueError, match='in_channels=4 but the input has 3'):
        run_toy(cfg)
    assert not glob.glob(osp.join(tmp_path, '*.pth'))


def test_too_small_images_fail_with_the_minimum_size(tmp_path):
    cfg = toy_cfg(tmp_path, dataset=dict(size=4))
    with pytest.raises(ValueError, match=r'4x4 pixels is too small.*at least'):
        run_toy(cfg)

