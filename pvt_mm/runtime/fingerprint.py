"""The config fingerprint an export records (``pvt_mm.model_sha256``),
computed without torch.

Same definition as :func:`pvt_mm.deploy.checks.model_fingerprint` (which
imports torch with the rest of :mod:`pvt_mm.deploy`): SHA-256 of the
canonical JSON of ``cfg.model`` without the keys of :data:`NOT_IN_GRAPH`.
tests/deploy/test_runtime.py checks that both give the same value."""
import hashlib
import json

#: Keys of ``cfg.model`` left out of the fingerprint (as
#: ``pvt_mm.deploy.checks.NOT_IN_GRAPH``).
NOT_IN_GRAPH = frozenset({'init_cfg', 'train_cfg', 'test_cfg', 'pretrained'})


def _graph_relevant(obj):
    if isinstance(obj, dict):
        return {k: _graph_relevant(v) for k, v in sorted(obj.items())
                if k not in NOT_IN_GRAPH}
    if isinstance(obj, (list, tuple)):
        return [_graph_relevant(v) for v in obj]
    return obj


def model_fingerprint(cfg) -> str:
    """SHA-256 of the parts of ``cfg.model`` that decide the exported graph
    (``cfg``: an MMEngine ``Config`` or a dict with a ``model`` entry)."""
    model = cfg['model'] if isinstance(cfg, dict) else cfg.model
    if hasattr(model, 'to_dict'):
        model = model.to_dict()
    text = json.dumps(_graph_relevant(model), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def load_config(path: str, cfg_options=None):
    """The config file ``path`` parsed by MMEngine without importing its
    ``custom_imports`` (pvt_mm's models, which need torch): enough for the
    fingerprint. ``cfg_options`` as ``--cfg-options`` gives them."""
    import os.path as osp
    if not osp.isfile(path):
        raise FileNotFoundError(f'config {path!r} does not exist')
    try:
        from mmengine.config import Config
    except ImportError as e:
        raise ImportError(
            f'reading the config {path} needs MMEngine, which is not '
            f'importable here ({e}): pip install mmengine (it does not need '
            f'torch), or run the end-to-end file without a config: python -m '
            f'pvt_mm.runtime FILE IMAGES') from e
    cfg = Config.fromfile(path, import_custom_modules=False)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


__all__ = ['NOT_IN_GRAPH', 'model_fingerprint', 'load_config']
