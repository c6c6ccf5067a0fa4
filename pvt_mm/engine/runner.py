"""What the command-line tools (tools/train.py, test.py, misc/demo.py, ...)
share: the common command line, loading a config with ``--cfg-options``
(``data_root=...`` moves every dataset path), the downstream library's
registry scope, checks that run before any model is built, and building
MMEngine's runner."""
import argparse
import importlib
import os
import os.path as osp
from typing import Optional

from mmengine.config import Config, DictAction

#: ``default_scope`` of the downstream bases -> the module whose
#: ``register_all_modules`` registers that library's modules.
SCOPES = {'mmdet': 'mmdet.utils', 'mmseg': 'mmseg.utils',
          'mmpretrain': 'mmpretrain.utils'}


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--work-dir', help='where logs, checkpoints and '
                        'metrics go (default: ./work_dirs/<config name>)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, default={},
        help='override config settings, e.g. data_root=/data/coco/ '
        'train_dataloader.batch_size=4 model.backbone.init_cfg=None')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'],
                        help='job launcher (dist_*.sh use pytorch, '
                        'slurm_*.sh use slurm)')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def load_config(path: str, cfg_options: Optional[dict] = None,
                work_dir: Optional[str] = None,
                launcher: Optional[str] = None) -> Config:
    """Parse the config file ``path`` and apply ``cfg_options`` (a
    ``data_root`` option moves every dataset path under the old root).

    ``path`` may be a ``pkg::`` name (``mmdet::retinanet/...py``,
    ``pvt_mm::retinanet_pvt_v2_b2_coco.py``). For tools that run MMEngine's
    runner, ``launcher`` (``'none'``, ``'pytorch'``, ...) is set on the
    config and ``work_dir`` defaults to ``./work_dirs/<config name>``."""
    from pvt_mm_config_hook import config_path
    path = config_path(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'config {path!r} does not exist (configs '
                                f'live in configs/, e.g. '
                                f'configs/retinanet_pvt_v2_b2_coco.py)')
    cfg = Config.fromfile(path)
    old_root = cfg.get('data_root')
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
        new_root = cfg_options.get('data_root')
        if isinstance(old_root, str) and isinstance(new_root, str):
            from pvt_mm.data import retarget_data_root
            retarget_data_root(cfg, old_root, new_root)
    if work_dir:
        cfg.work_dir = work_dir
    elif launcher is not None and cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(path))[0])
    if launcher is not None:
        cfg.launcher = launcher
    return cfg


def config_from_args(path: str, args) -> Config:
    """:func:`load_config` with the options of :func:`add_common_args`."""
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return load_config(path, args.cfg_options, args.work_dir, args.launcher)


def init_scope(cfg) -> str:
    """Register the modules of the library the config's bases belong to
    (``default_scope``: mmdet, mmseg or mmpretrain)."""
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        raise ValueError(
            f'default_scope={scope!r}: tools/train.py and tools/test.py run '
            f'configs built on MMDetection, MMSegmentation or MMPretrain '
            f'bases, whose default_runtime sets default_scope to one of '
            f'{", ".join(SCOPES)}; inherit one of them or set default_scope')
    importlib.import_module(SCOPES[scope]).register_all_modules(
        init_default_scope=False)
    return scope


def prepare(cfg, splits) -> None:
    """Every check that must pass before a model is built: datasets of
    ``splits`` in place and in their layout, then pvt_mm.engine's checks
    (registered types, data paths) and CPU distributed set-up. Importing
    pvt_mm.engine also makes MMEngine checkpoints load under torch's
    ``weights_only=True`` default."""
    from pvt_mm.engine import prepare_config
    init_scope(cfg)
    prepare_config(cfg, splits)


def use_amp(cfg) -> None:
    """Train with automatic mixed precision (``--amp`` of tools/train.py and
    tools/misc/demo.py): MMEngine's ``AmpOptimWrapper`` with a dynamic loss
    scale unless the config sets one. Needs CUDA: a clear error otherwise."""
    import torch
    if not torch.cuda.is_available():
        raise SystemExit('--amp needs a CUDA GPU (MMEngine\'s '
                         'AmpOptimWrapper); none is available here. Drop '
                         '--amp to train in fp32.')
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')


def use_compile(cfg, bucket: int = 64) -> None:
    """Train with ``torch.compile`` (``--compile`` of tools/train.py): the
    backbone and neck compiled in place by ``pvt_mm.CompileHook`` (static
    shapes, one graph each, validation eager) and, for MMDetection models,
    whose padded batch size follows the images, every training batch
    padded to a multiple of ``bucket`` pixels (``pvt_mm.SizeBuckets``) so
    that a few sizes compile. Segmentation and classification recipes
    train on fixed crops and need no buckets. See pvt_mm/engine/compile.py.
    """
    if cfg.get('compile'):
        raise SystemExit(
            f'--compile: the config already sets compile={cfg.compile!r} '
            f'(MMEngine compiles the whole train_step, heads and losses '
            f'included, and recompiles at their data-dependent shapes). '
            f'Use one of them: remove compile from the config, or drop '
            f'--compile')
    hooks = list(cfg.get('custom_hooks') or [])
    if any(str(h.get('type', '')).endswith('CompileHook') for h in hooks):
        raise SystemExit('--compile: the config already has a CompileHook '
                         'in custom_hooks; drop --compile')
    cfg.custom_hooks = hooks + [dict(type='pvt_mm.CompileHook')]
    dp = cfg.get('model', {}).get('data_preprocessor') or {}
    if not str(dp.get('type', '')).lower().endswith('detdatapreprocessor'):
        return
    divisor = dp.get('pad_size_divisor', 1) or 1
    if bucket < 1 or bucket % divisor:
        raise SystemExit(
            f'--compile-bucket {bucket}: must be a positive multiple of the '
            f'data preprocessor\'s pad_size_divisor ({divisor}), e.g. '
            f'{divisor * max(1, round(64 / divisor))}')
    dp.batch_augments = list(dp.get('batch_augments') or []) + [dict(
        type='pvt_mm.SizeBuckets', step=bucket,
        pad_mask=dp.get('pad_mask', False),
        mask_pad_value=dp.get('mask_pad_value', 0),
        pad_seg=dp.get('pad_seg', False),
        seg_pad_value=dp.get('seg_pad_value', 255))]


def use_test_time_aug(cfg) -> None:
    """Test with the config's test-time augmentation, the way MMDetection's
    and MMSegmentation's ``tools/test.py --tta`` do: the test set runs
    ``tta_pipeline`` and ``tta_model`` (e.g. ``SegTTAModel``) merges the
    predictions of every augmented view of the model."""
    missing = [k for k in ('tta_pipeline', 'tta_model') if not cfg.get(k)]
    if missing:
        raise ValueError(
            f'--tta: the config defines no {" / ".join(missing)}; add them '
            f'(e.g. configs/sem_fpn_pvt_v1_large_ade20k_160k_tta.py: '
            f"tta_model = dict(type='SegTTAModel') and a TestTimeAug "
            f'pipeline) or test without --tta')
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model


def build_runner(cfg):
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def finish() -> None:
    """Leave a distributed run cleanly: a gloo/nccl group still alive at
    interpreter exit can abort the process after the work is done."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


__all__ = ['SCOPES', 'add_common_args', 'load_config', 'config_from_args',
           'init_scope', 'prepare', 'use_amp', 'use_compile',
           'use_test_time_aug', 'build_runner', 'finish']
