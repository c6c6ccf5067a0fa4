"""The toy training task of the reliability tests: a tiny PVTv2 + linear
head on synthetic images, with drop-path, dropout and random flips so that
randomness matters, registered in MMEngine's root registries, plus the
helpers that run it and compare its weights.

Shared by tests/engine/test_reliability.py (in-process) and
tests/engine/test_reliability_e2e.py (also in the child processes it
starts, which import this module by name).
"""
import copy
import itertools
import os
import os.path as osp

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, HOOKS, METRICS, MODELS
from mmengine.runner import Runner
from torch.utils.data import Dataset

import pvt_mm.engine  # noqa: F401  (safe loading + hooks)

TINY_ARCH = dict(embed_dims=[8, 16], depths=[1, 1], num_heads=[1, 2],
                 mlp_ratios=[2, 2], sr_ratios=[2, 1])
NUM_CLASSES = 3
_RUN_IDS = itertools.count()




# --------------------------------------------------------------- toy task
@DATASETS.register_module(force=True)
class RelToyDataset(Dataset):
    """Images whose label is the brightest colour channel, randomly flipped
    with numpy's global generator (an augmentation in the main process)."""
    # numpy array + tuple: MMEngine saves this in every checkpoint's meta.
    metainfo = dict(classes=('r', 'g', 'b'), palette=np.eye(3, dtype=np.uint8))

    def __init__(self, num=16, size=32, channels=3, seed=0, flip=True):
        self.flip = flip
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(num) % NUM_CLASSES
        self.images = torch.rand(num, channels, size, size, generator=g)
        self.images[torch.arange(num), self.labels % channels] += 0.5

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        image = self.images[i]
        if self.flip and np.random.rand() < 0.5:
            image = image.flip(-1)
        return dict(inputs=image, label=self.labels[i])


@MODELS.register_module(force=True)
class RelToyClassifier(BaseModel):
    """PVTv2 (2 tiny stages, drop-path) + dropout + linear head.
    ``poison_iter``: the loss of that training call (1-based) is NaN."""

    def __init__(self, backbone=None, poison_iter=None, dropout=0.2):
        super().__init__()
        backbone = dict(dict(type='pvt_mm.PVTv2', arch=TINY_ARCH,
                             drop_path_rate=0.2, out_indices=(1, ),
                             out_type='avg_featmap'), **(backbone or {}))
        self.backbone = MODELS.build(backbone)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(TINY_ARCH['embed_dims'][-1], NUM_CLASSES)
        self.poison_iter = poison_iter
        self.calls = 0

    def forward(self, inputs, label=None, mode='tensor'):
        logits = self.head(self.dropout(self.backbone(inputs)[0]))
        if mode == 'loss':
            self.calls += 1
            loss = F.cross_entropy(logits, label)
            if self.calls == self.poison_iter:
                loss = loss * float('nan')
            return dict(loss_cls=loss, loss_aux=0.1 * logits.pow(2).mean())
        if mode == 'predict':
            return list(zip(logits.softmax(-1), label))
        return logits


@METRICS.register_module(force=True)
class RelToyMetric(BaseMetric):
    """Accuracy, mean top probability (sensitive to every sample's logits)
    and the number of samples evaluated."""

    def process(self, data_batch, data_samples):
        for probs, label in data_samples:
            self.results.append((probs.max().item(),
                                 float(probs.argmax() == label)))

    def compute_metrics(self, results):
        arr = np.array(results, dtype=np.float64)
        return dict(accuracy=arr[:, 1].mean(), mean_top_prob=arr[:, 0].mean(),
                    count=len(results))


@HOOKS.register_module(force=True)
class RelStopAtIterHook(Hook):
    """Interrupts training after iteration ``iter`` (1-based): raises
    ``KeyboardInterrupt``, or sends SIGKILL to its own process."""

    def __init__(self, iter, sigkill=False):
        self.iter, self.sigkill = iter, sigkill

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if runner.iter + 1 == self.iter:
            if self.sigkill:
                import signal
                os.kill(os.getpid(), signal.SIGKILL)
            raise KeyboardInterrupt(f'stopped after iteration {self.iter}')


@HOOKS.register_module(force=True)
class RelSaveInitialWeightsHook(Hook):
    """Writes the weights training starts from (after ``init_weights``)
    to ``<work_dir>/initial.pth``, so a test can compare weight updates."""

    def before_train(self, runner):
        from mmengine.model import is_model_wrapper
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        torch.save(model.state_dict(), osp.join(runner.work_dir,
                                                'initial.pth'))


def toy_cfg(work_dir, max_iters=6, interval=2, batch_size=2, by_epoch=False,
            seed_hook=True, checkpoint=None, custom_hooks=(), model=None,
            dataset=None, **kwargs):
    """A complete runner config of the toy task (iteration-based by
    default; ``by_epoch=True`` trains ``max_iters`` epochs)."""
    data = dict(type='RelToyDataset', **(dataset or {}))
    loader = dict(batch_size=batch_size, num_workers=0,
                  sampler=dict(type='DefaultSampler', shuffle=True),
                  collate_fn=dict(type='default_collate'), dataset=data)
    train_cfg = dict(by_epoch=True, max_epochs=max_iters, val_interval=100) \
        if by_epoch else dict(by_epoch=False, max_iters=max_iters,
                              val_interval=100)
    hooks = [dict(type='pvt_mm.NonFiniteLossHook')]
    if seed_hook:
        hooks.append(dict(type='pvt_mm.IterationSeedHook'))
    cfg = dict(
        model=dict(type='RelToyClassifier', **(model or {})),
        work_dir=str(work_dir),
        experiment_name=f'toy_{os.getpid()}_{next(_RUN_IDS)}',
        train_dataloader=loader,
        val_dataloader=dict(loader, dataset=dict(data, flip=False),
                            sampler=dict(type='DefaultSampler',
                                         shuffle=False)),
        val_evaluator=dict(type='RelToyMetric'),
        val_cfg=dict(type='ValLoop'),
        train_cfg=train_cfg,
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-2)),
        param_scheduler=[dict(type='LinearLR', start_factor=0.1,
                              by_epoch=False, begin=0, end=3),
                         dict(type='MultiStepLR', milestones=[4],
                              by_epoch=by_epoch)],
        default_hooks=dict(
            checkpoint=checkpoint or dict(type='pvt_mm.AtomicCheckpointHook',
                                          interval=interval,
                                          by_epoch=by_epoch),
            logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=hooks + list(custom_hooks),
        randomness=dict(seed=0, deterministic=False),
        env_cfg=dict(cudnn_benchmark=False),
        log_level='WARNING',
    )
    cfg.update(kwargs)
    return cfg


def run_toy(cfg, mode='train'):
    runner = Runner.from_cfg(Config(copy.deepcopy(cfg)))
    if mode == 'train':
        runner.train()
    return runner


def weights(runner):
    return {k: v.detach().clone()
            for k, v in runner.model.state_dict().items()}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    diff = [k for k in a if not torch.equal(a[k], b[k])]
    assert not diff, f'{len(diff)} tensors differ, e.g. {diff[:3]}'


def last_checkpoint(work_dir):
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()
