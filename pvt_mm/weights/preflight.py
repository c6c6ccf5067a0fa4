"""The weights a run needs, checked before anything is built.

``tools/train.py`` and ``tools/test.py`` call :func:`check_weight_sources`
after the datasets are checked and before MMEngine builds dataloaders or
the model: every ``Pretrained`` checkpoint of the model (training only:
testing loads the trained checkpoint over them) and ``load_from`` must be
a readable local file, or a URL that is cached or downloads now, once,
into the cache the loaders read later (:mod:`pvt_mm.weights.sources`). A
run never starts on random backbone weights because a download failed;
the error names the config key to override.
"""
from typing import Iterator, List, NamedTuple, Optional

from .io import CheckpointError
from .sources import is_remote, local_file, resolve_url


class WeightSource(NamedTuple):
    key: str  # the config setting, e.g. 'model.backbone.init_cfg.checkpoint'
    source: str
    sha256: Optional[str] = None


def _pretrained(node, path: str) -> Iterator[WeightSource]:
    """``Pretrained`` init_cfgs (dicts or lists of them) and
    ``pretrained=`` strings under ``node``."""
    if isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            yield from _pretrained(item, f'{path}[{i}]')
        return
    if not isinstance(node, dict):
        return
    if node.get('checkpoint') and (node.get('type') == 'Pretrained' or (
            'type' not in node and path.endswith('init_cfg'))):
        # (MMDetection's PVT/Swin configs: init_cfg=dict(checkpoint=URL))
        yield WeightSource(f'{path}.checkpoint', node['checkpoint'],
                           node.get('sha256'))
    for key, value in node.items():
        if key == 'pretrained' and isinstance(value, str) and value:
            yield WeightSource(f'{path}.pretrained', value)
        elif isinstance(value, (dict, list, tuple)):
            yield from _pretrained(value, f'{path}.{key}')


def weight_sources(cfg, training: bool = True) -> List[WeightSource]:
    """Every checkpoint the run reads: the model's pretrained weights when
    ``training`` (MMEngine initialises them before it resumes, too), and
    ``load_from``."""
    sources = list(_pretrained(cfg.get('model'), 'model')) if training else []
    load_from = cfg.get('load_from')
    if isinstance(load_from, str) and load_from:
        sources.append(WeightSource('load_from', load_from))
    return sources


def check_weight_sources(cfg, training: bool = True) -> List[str]:
    """Check (and for URLs, fetch into the cache) every source of
    :func:`weight_sources`; return the local files. Raises
    :class:`~pvt_mm.weights.CheckpointError` naming the config key, the
    URL and cache path, and the override that uses a local file."""
    files = []
    for item in weight_sources(cfg, training):
        if is_remote(item.source) and resolve_url(item.source) is None:
            continue  # pavi://, s3://, ...: read by MMEngine's loader
        try:
            files.append(local_file(item.source, item.sha256, item.key))
        except CheckpointError as e:
            raise type(e)(f'{item.key}: {e}') from e
    return files


def without_pretrained(node):
    """A copy of a model config with every ``Pretrained`` init_cfg set to
    ``None`` and ``pretrained=`` strings cleared: for tools that need
    random weights only (an export or a benchmark without a checkpoint)
    and must not ask for a download."""
    if isinstance(node, (list, tuple)):
        return type(node)(without_pretrained(v) for v in node)
    if not isinstance(node, dict):
        return node
    out = type(node)()
    for key, value in node.items():
        if key == 'init_cfg' and isinstance(value, dict) and (
                value.get('type') == 'Pretrained' or (
                    'type' not in value and 'checkpoint' in value)):
            value = None
        elif key == 'init_cfg' and isinstance(value, (list, tuple)):
            value = [v for v in value if not (
                isinstance(v, dict) and v.get('type') == 'Pretrained')] or None
        elif key == 'pretrained' and isinstance(value, str):
            value = None
        out[key] = without_pretrained(value)
    return out


__all__ = ['WeightSource', 'check_weight_sources', 'weight_sources',
           'without_pretrained']
