"""Checks and adjustments of a training/test config before the runner is
built: fail in seconds with a message naming the config key, not minutes
later deep inside a data loader or registry."""
import datetime
import difflib
import os
import os.path as osp
from typing import Iterator, Sequence, Tuple

import torch
import torch.distributed as torch_dist

from pvt_mm.registry import HOOKS, MODELS

SCOPE = 'pvt_mm.'
SPLITS = ('train', 'val', 'test')
DATA_HINT = ('generate the demo data with `python tools/make_demo_data.py` '
             'or set data_root to where your dataset is')


class ConfigError(ValueError):
    """A config value that cannot work, with the key, the value and the fix."""


def _walk(node, path: str = '') -> Iterator[Tuple[str, dict]]:
    """Every dict in a config tree, with its dotted key path."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f'{path}.{key}' if path else str(key))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _walk(value, f'{path}[{i}]')


def check_registered_types(cfg) -> None:
    """Every ``type='pvt_mm.X'`` must name a registered pvt_mm module."""
    registries = {'models': MODELS, 'hooks': HOOKS}
    for registry in registries.values():
        registry.import_from_location()
    known = {name for r in registries.values() for name in r.module_dict}
    tree = cfg.to_dict() if hasattr(cfg, 'to_dict') else cfg  # a Config
    for path, node in _walk(tree):
        type_ = node.get('type')
        if not (isinstance(type_, str) and type_.startswith(SCOPE)):
            continue
        name = type_[len(SCOPE):]
        if name in known:
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1)
        listing = '; '.join(f'{kind}: {", ".join(sorted(r.module_dict))}'
                            for kind, r in registries.items())
        raise ConfigError(
            f'{path}.type={type_!r} is not registered in pvt_mm'
            + (f" (did you mean 'pvt_mm.{close[0]}'?)" if close else '')
            + f'. Registered {listing}.')


def _datasets(node, path: str) -> Iterator[Tuple[str, dict]]:
    """A dataloader's dataset dicts, looking inside dataset wrappers."""
    if isinstance(node, dict):
        yield path, node
        if isinstance(node.get('dataset'), dict):
            yield from _datasets(node['dataset'], f'{path}.dataset')
        for i, sub in enumerate(node.get('datasets') or []):
            yield from _datasets(sub, f'{path}.datasets[{i}]')


def _is_local(path) -> bool:
    return isinstance(path, str) and bool(path) and '://' not in path


def check_data_paths(cfg, splits: Sequence[str] = SPLITS) -> None:
    """``data_root``, ``ann_file`` and ``data_prefix`` of the datasets of
    ``splits`` must exist (local paths; remote backends are not checked)."""
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not isinstance(loader, dict):
            continue
        for path, ds in _datasets(loader.get('dataset'),
                                  f'{split}_dataloader.dataset'):
            backend = ds.get('backend_args') or {}
            if backend.get('backend', 'local') != 'local':
                continue
            root = ds.get('data_root') or ''
            if _is_local(root) and not osp.isdir(root):
                raise FileNotFoundError(
                    f'{path}.data_root={root!r}: no such directory (from '
                    f'{os.getcwd()}); {DATA_HINT}.')
            ann = ds.get('ann_file')
            if _is_local(ann):
                full = ann if osp.isabs(ann) else osp.join(root, ann)
                if not osp.isfile(full):
                    raise FileNotFoundError(
                        f'{path}.ann_file={ann!r}: annotation file {full} '
                        f'does not exist; {DATA_HINT}.')
            prefix = ds.get('data_prefix')
            prefixes = prefix.items() if isinstance(prefix, dict) else \
                [('', prefix)]
            for key, sub in prefixes:
                if not _is_local(sub):
                    continue
                full = sub if osp.isabs(sub) else osp.join(root, sub)
                if not osp.exists(full):
                    name = f'data_prefix.{key}' if key else 'data_prefix'
                    raise FileNotFoundError(
                        f'{path}.{name}={sub!r}: {full} does not exist; '
                        f'{DATA_HINT}.')


def setup_cpu_distributed(cfg) -> None:
    """Let ``launcher='pytorch'`` (``torchrun``, ``dist_train.sh``) work
    without a GPU. MMEngine 0.10 calls ``torch.cuda.set_device`` when it
    starts the process group and gives DDP ``device_ids=[LOCAL_RANK]``;
    both fail on CPU. Here the process group is started with gloo and DDP
    gets ``device_ids=None``. Does nothing with a GPU or ``launcher='none'``.
    """
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        return
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    if dist_cfg.get('backend', 'nccl') != 'gloo':
        dist_cfg['backend'] = 'gloo'  # nccl needs a GPU
    if cfg.launcher != 'pytorch':
        raise ConfigError(
            f"launcher={cfg.launcher!r} on a machine without a GPU: only "
            f"launcher='pytorch' (torchrun) is supported on CPU")
    if not torch_dist.is_initialized():
        timeout = dist_cfg.get('timeout')
        torch_dist.init_process_group(
            backend='gloo',
            timeout=datetime.timedelta(seconds=timeout) if timeout else None)
    wrapper = dict(cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False)))
    wrapper['device_ids'] = None  # a CPU module takes no device ids
    cfg.model_wrapper_cfg = wrapper


def prepare_config(cfg, splits: Sequence[str] = SPLITS) -> None:
    """What ``tools/train.py`` / ``tools/test.py`` run before
    ``Runner.from_cfg(cfg)``: check registered types and the data paths of
    ``splits`` (``('test',)`` for testing), then set up CPU distributed
    training if asked for."""
    check_registered_types(cfg)
    check_data_paths(cfg, splits)
    setup_cpu_distributed(cfg)
