"""Checks and adjustments of a training/test config before the runner is
built: fail in seconds with a message naming the config key, not minutes
later deep inside a data loader or registry."""
import datetime
import difflib
from typing import Iterator, Sequence, Tuple

import torch
import torch.distributed as torch_dist
from mmengine.logging import print_log

from pvt_mm.data import check_dataset_contents, check_dataset_layout
from pvt_mm.registry import HOOKS, MODELS
from pvt_mm.weights import check_weight_sources

SCOPE = 'pvt_mm.'
SPLITS = ('train', 'val', 'test')


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
    ``Runner.from_cfg(cfg)``: check registered types, the datasets of
    ``splits`` (``('test',)`` for testing) on disk and their contents
    against the config (:func:`pvt_mm.data.check_dataset_layout`,
    :func:`pvt_mm.data.check_dataset_contents`: classes, ``num_classes``,
    images left after filtering, missing images, label values), every
    checkpoint the run reads (:func:`pvt_mm.weights.check_weight_sources`:
    a readable file, or a URL fetched into the cache now; the model's
    pretrained weights only when training), then set up CPU distributed
    training if asked for."""
    check_registered_types(cfg)
    check_dataset_layout(cfg, splits)
    for note in check_dataset_contents(cfg, splits):
        print_log(note, logger='current')
    check_weight_sources(cfg, training='train' in splits)
    setup_cpu_distributed(cfg)
