"""The config fingerprint an export records (``pvt_mm.model_sha256``):
SHA-256 of the canonical JSON of ``cfg.model`` without the keys that do not
decide the graph. Torch-free, so the runtime checks files with it;
:mod:`pvt_mm.deploy.checks` uses the same function."""
import hashlib
import json

#: Keys of ``cfg.model`` left out of the fingerprint of a network-only
#: export: weight initialisation, training settings, and the test-time
#: settings that its post-processing (in PyTorch) reads from the config.
NOT_IN_GRAPH = frozenset({'init_cfg', 'train_cfg', 'test_cfg', 'pretrained'})
#: An end-to-end graph holds the post-processing, so the model's
#: ``test_cfg`` (score threshold, NMS, ``max_per_img``, the segmentor's
#: mode) counts: the top-level one; the copies that mmdet's detectors put
#: into their heads' configs when they build them do not.
NOT_IN_END2END_GRAPH = NOT_IN_GRAPH - {'test_cfg'}


def _graph_relevant(obj, skip=NOT_IN_GRAPH):
    if isinstance(obj, dict):
        return {k: _graph_relevant(v) for k, v in sorted(obj.items())
                if k not in skip}
    if isinstance(obj, (list, tuple)):
        return [_graph_relevant(v) for v in obj]
    return obj


def model_fingerprint(cfg, end2end: bool = False) -> str:
    """SHA-256 of the parts of ``cfg.model`` that decide the exported graph
    (``cfg``: an MMEngine ``Config`` or a dict with a ``model`` entry);
    ``end2end``: of an end-to-end graph, which also holds ``test_cfg``."""
    model = cfg['model'] if isinstance(cfg, dict) else cfg.model
    if hasattr(model, 'to_dict'):
        model = model.to_dict()
    skip = NOT_IN_END2END_GRAPH if end2end else NOT_IN_GRAPH
    text = json.dumps(_graph_relevant(model, skip), sort_keys=True,
                      default=str)
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


__all__ = ['NOT_IN_GRAPH', 'NOT_IN_END2END_GRAPH', 'model_fingerprint', 'load_config']
