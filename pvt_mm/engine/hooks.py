"""Training hooks that make runs fail loudly and resume exactly.

- :class:`AtomicCheckpointHook`: MMEngine's ``CheckpointHook`` whose files
  (checkpoints, ``last_checkpoint``) are replaced atomically and whose old
  checkpoints are deleted only after the new one is safely on disk.
- :class:`NonFiniteLossHook`: stops training with a ``FloatingPointError``
  naming the iteration and the loss terms as soon as a loss is NaN/Inf.
- :class:`IterationSeedHook`: re-seeds the random generators from
  ``(seed, iteration)``, so a resumed run draws the same dropout /
  drop-path masks and augmentations as an uninterrupted one.
"""
import math
import os
import os.path as osp
import random
import re
from typing import Optional

import numpy as np
import torch
from mmengine.dist import get_rank, is_main_process
from mmengine.hooks import CheckpointHook, Hook

from pvt_mm.registry import HOOKS
from .checkpoint import ATOMIC_BACKEND, TMP_INFIX, atomic_write


def _is_local(path: Optional[str]) -> bool:
    return path is None or '://' not in str(path)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` that never leaves a half-written checkpoint.

    Takes the arguments of :class:`mmengine.hooks.CheckpointHook`. For a
    local ``out_dir`` (the default: ``work_dir``) it writes through
    :class:`~pvt_mm.engine.checkpoint.AtomicLocalBackend`; ``last_checkpoint``
    is replaced atomically after the checkpoint it names is complete, and
    checkpoints beyond ``max_keep_ckpts`` are removed only after that. A
    kill at any moment therefore leaves ``last_checkpoint`` naming a complete
    file. Temporary files of a killed save are removed at the next start.
    """

    def __init__(self, interval: int = -1, **kwargs):
        if (kwargs.get('backend_args') is None
                and kwargs.get('file_client_args') is None
                and _is_local(kwargs.get('out_dir'))):
            kwargs['backend_args'] = dict(backend=ATOMIC_BACKEND)
        super().__init__(interval=interval, **kwargs)

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if not (is_main_process() and _is_local(self.out_dir)):
            return
        stale = re.compile(re.escape(TMP_INFIX) + r'\d+$')
        for folder in {str(self.out_dir), str(runner.work_dir)}:
            for name in os.listdir(folder) if osp.isdir(folder) else []:
                if stale.search(name):
                    os.remove(osp.join(folder, name))
                    runner.logger.warning(
                        f'removed {osp.join(folder, name)}: left by a save '
                        f'that was interrupted')

    def _save_checkpoint_with_step(self, runner, step, meta):
        # Same bookkeeping as CheckpointHook, reordered: save the new
        # checkpoint, then point last_checkpoint at it, then delete old ones
        # (the parent deletes first, so a kill while saving lost both).
        outdated = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and
                                            self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir,
                                                     ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir,
            ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if not is_main_process():
            return
        atomic_write(osp.join(runner.work_dir, 'last_checkpoint'),
                     str(self.last_ckpt).encode())
        for old_step in outdated:
            path = self.file_backend.join_path(
                self.out_dir, self.filename_tmpl.format(old_step))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # DeepSpeed checkpoints
                self.file_backend.rmtree(path)


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Raise ``FloatingPointError`` when a loss of a training iteration is
    NaN or Inf, naming the iteration and every loss term.

    It runs after the iteration and before the logger and checkpoint hooks,
    so no checkpoint with diverged weights is written. The optimizer step of
    the failing iteration has already run: restart from the last checkpoint
    after fixing the cause.
    """
    priority = 'ABOVE_NORMAL'

    def after_train_iter(self, runner, batch_idx: int,
                         data_batch=None, outputs=None) -> None:
        if not outputs:
            return
        losses = {k: v for k, v in outputs.items()
                  if 'loss' in k and isinstance(v, (torch.Tensor, float, int))}
        if not losses:
            return
        values = torch.stack([torch.as_tensor(v, dtype=torch.float64).detach()
                              .cpu().reshape(()) for v in losses.values()])
        if bool(torch.isfinite(values).all()):  # one sync per iteration
            return
        terms = ', '.join(f'{k}={v:.4g}' for k, v in
                          zip(losses, values.tolist()))
        bad = [k for k, v in zip(losses, values.tolist())
               if not math.isfinite(v)]
        raise FloatingPointError(
            f'non-finite loss at iteration {runner.iter + 1} (epoch '
            f'{runner.epoch + 1}, batch {batch_idx + 1}): {", ".join(bad)} '
            f'is NaN/Inf ({terms}). Training stopped; nothing of this '
            f'iteration was saved. Usual causes: learning rate too high or no '
            f'warm-up (add clip_grad to optim_wrapper), fp16 overflow (use '
            f'bf16 or AmpOptimWrapper with loss_scale=\'dynamic\'), empty or '
            f'degenerate boxes in the annotations. Resume from the last '
            f'checkpoint once fixed.')


@HOOKS.register_module()
class IterationSeedHook(Hook):
    """Make training randomness a function of ``(seed, iteration)``.

    MMEngine restores weights, optimizer, schedulers and the data position
    on resume, but not the state of the random generators, so a resumed run
    draws different dropout / drop-path masks and augmentations than an
    uninterrupted one. This hook re-seeds ``torch``, ``numpy`` and
    ``random`` from the runner's seed (saved in every checkpoint), the rank
    (if ``randomness.diff_rank_seed``) and a counter:

    - before each training iteration (model-side randomness);
    - before each batch is fetched (augmentations run in the main process
      when ``num_workers=0``; workers are seeded by MMEngine already).

    With it, interrupt + resume gives bit-identical weights on CPU.
    """
    priority = 'VERY_HIGH'

    def _reseed(self, runner, counter: int, stream: int) -> None:
        seed = runner.seed if runner.seed is not None else 0
        randomness = runner.cfg.get('randomness') or {}
        rank = get_rank() if randomness.get('diff_rank_seed') else 0
        state = np.random.SeedSequence([seed, rank, counter, stream])
        value = int(state.generate_state(1)[0])
        random.seed(value)
        np.random.seed(value)
        torch.manual_seed(value)

    def before_train(self, runner) -> None:
        loop = runner.train_loop
        if hasattr(loop, 'dataloader_iterator'):  # iteration-based loop
            loop.dataloader_iterator = _SeededBatches(
                loop.dataloader_iterator, lambda n: self._reseed(runner, n, 1))

    def before_train_epoch(self, runner) -> None:
        # Epoch-based loops fetch the epoch's first batch after this hook.
        self._reseed(runner, runner.iter, 1)

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        self._reseed(runner, runner.iter, 0)


class _SeededBatches:
    """Wraps an iteration-based loop's infinite data iterator and re-seeds
    before every fetch (fetch ``n`` is the data of iteration ``n``; resuming
    at iteration ``k`` fetches and skips ``0 .. k-1`` first)."""

    def __init__(self, iterator, reseed):
        self._iterator = iterator
        self._reseed = reseed
        self._fetched = 0

    def __iter__(self):
        return self

    def __next__(self):
        self._reseed(self._fetched)
        self._fetched += 1
        return next(self._iterator)

    def __getattr__(self, name):
        if name.startswith('__') or name == '_iterator':
            raise AttributeError(name)
        return getattr(self._iterator, name)
