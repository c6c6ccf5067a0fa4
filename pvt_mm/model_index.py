"""The model index: what is known about each config, read from the
OpenMMLab metafiles.

``model-index.yml`` (the file ``mim`` reads) imports one
``configs/<family>/metafile.yml`` per family (PVTv1, PVTv2, CvT). Each
lists every config of the family with

* ``Results``: the published number(s), OpenMMLab's metric names (``box AP``,
  ``mask AP``, ``mIoU``, ``Top 1 Accuracy``), and in ``Metadata``:
* ``Results Source``: where the number was published;
* ``Official Config`` (the official file it follows) or ``No Official
  Config`` (why there is none);
* ``Pretrained Weights``: the URL of the backbone's ImageNet weights the
  config loads (none for the ImageNet configs, which train from scratch);
* ``Deviations``: ``{setting: reason}``, the differences from the official
  recipe kept on purpose (tests/configs/test_recipes.py allows exactly
  these);
* optional ``Paper Column`` (a second published number: the PVTv1
  segmentation README's paper column beside its code column),
  ``Test-Time Augmentation`` (published with it) and ``Note`` (shown
  beside the config in docs/model_zoo.md).

Imports PyYAML only (MMEngine's dependency); ``import pvt_mm`` does not
import this module.
"""
import functools
import os.path as osp
from typing import Dict, Optional

import yaml

#: metafile metric name -> the name tools/analysis_tools/paper_table.py
#: and pvt_mm.paper_results use
METRICS = {'box AP': 'bbox_mAP', 'mask AP': 'segm_mAP', 'mIoU': 'mIoU',
           'Top 1 Accuracy': 'top1'}


def index_file() -> str:
    """``<package>/.mim/model-index.yml`` (the repository's
    model-index.yml in a checkout or an editable install)."""
    from pvt_mm_config_hook import configs_dir
    return osp.join(osp.dirname(configs_dir('pvt_mm')), 'model-index.yml')


def read_metafiles(path: Optional[str] = None) -> Dict[str, dict]:
    """``{metafile path: its content}`` for every metafile ``path`` (a
    model-index.yml; default: the installed one) imports, in its order."""
    path = path or index_file()
    with open(path) as f:
        index = yaml.safe_load(f)
    out = {}
    for rel in index.get('Import', []):
        metafile = osp.join(osp.dirname(path), rel)
        with open(metafile) as f:
            out[metafile] = yaml.safe_load(f)
    return out


def read_index(path: Optional[str] = None) -> Dict[str, dict]:
    """``{config name: model entry}`` over the metafiles, in their order.
    A config listed twice, or a model without a name, is an error naming
    the file."""
    models = {}
    for metafile, meta in read_metafiles(path).items():
        for model in meta.get('Models', []):
            name = model.get('Name')
            if not name:
                raise ValueError(f'{metafile}: a model without a Name')
            if name in models:
                raise ValueError(f'{metafile}: {name} is listed twice in '
                                 f'the model index')
            models[name] = model
    return models


@functools.lru_cache(maxsize=None)
def models() -> Dict[str, dict]:
    """The installed package's index (read once)."""
    return read_index()


def _metadata(name: str) -> dict:
    return (models().get(name) or {}).get('Metadata') or {}


def published(model: dict) -> Dict[str, float]:
    """``{metric: value}`` of a model entry's ``Results`` (paper_table
    names: ``bbox_mAP``, ``segm_mAP``, ``mIoU``, ``top1``)."""
    out = {}
    for result in model.get('Results') or []:
        for metric, value in result['Metrics'].items():
            if metric not in METRICS:
                raise ValueError(f'{model["Name"]}: unknown metric {metric!r}'
                                 f'; one of {", ".join(METRICS)}')
            out[METRICS[metric]] = value
    return out


def deviations(name: str) -> Dict[str, str]:
    """``{setting: reason}``: where the config differs from the official
    recipe on purpose (empty for a config not in the index)."""
    return dict(_metadata(name).get('Deviations') or {})


def pretrained_weights(name: str) -> Optional[str]:
    """The URL of the backbone weights the config starts from, or None."""
    return _metadata(name).get('Pretrained Weights')


def no_official_config(name: str) -> Optional[str]:
    """Why the config has no official recipe to follow, or None."""
    return _metadata(name).get('No Official Config')
