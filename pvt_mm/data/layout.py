"""Dataset location and layout checks for ``tools/train.py`` / ``test.py``.

- :func:`retarget_data_root`: ``--cfg-options data_root=PATH`` moves every
  dataset and evaluator path that the config derived from ``data_root``
  (MMEngine evaluates ``data_root + '...'`` when the config is parsed, so
  overriding the variable alone would change nothing).
- :func:`check_dataset_layout`: before any model is built, every dataset a
  run reads must be where the config says, in the layout its type expects
  (COCO json with images/annotations/categories, ADE20K-style image and
  label folders, ImageNet-style class folders); otherwise a
  :class:`DatasetLayoutError` names the missing or malformed path, shows the
  expected layout and how to point the config elsewhere.
"""
import json
import os
import os.path as osp
from typing import Iterable, Iterator, List, Tuple

#: COCO json files larger than this are only checked to be a JSON object
#: (parsing COCO train2017 twice would cost seconds and ~1 GB).
MAX_PARSED_JSON_BYTES = 64 * 2**20
IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
FIX_HINT = ('Point the config at your copy with `--cfg-options '
            'data_root=PATH`, or run `python tools/misc/make_demo_data.py` and '
            'use a configs/demo/ config.')


class DatasetLayoutError(FileNotFoundError):
    """A dataset a run needs is missing or not in the expected layout."""


def _walk_strings(node, fn):
    """Copy of a config tree with ``fn`` applied to every string."""
    if isinstance(node, dict):
        for key, value in node.items():
            node[key] = _walk_strings(value, fn)
        return node
    if isinstance(node, list):
        return [_walk_strings(v, fn) for v in node]
    if isinstance(node, tuple):
        return tuple(_walk_strings(v, fn) for v in node)
    return fn(node) if isinstance(node, str) else node


def retarget_data_root(cfg, old_root: str, new_root: str) -> None:
    """Replace the ``old_root`` prefix by ``new_root`` in every path of the
    dataloaders and evaluators (``data_root``, ``ann_file``, ...)."""
    if not old_root or old_root == new_root:
        return
    if old_root.endswith('/') and not new_root.endswith('/'):
        new_root += '/'

    def move(value: str) -> str:
        if value == old_root.rstrip('/') or value.startswith(old_root):
            return new_root + value[len(old_root):]
        return value

    for split in ('train', 'val', 'test'):
        for key in (f'{split}_dataloader', f'{split}_evaluator'):
            if cfg.get(key) is not None:
                cfg[key] = _walk_strings(cfg[key], move)
    cfg.data_root = new_root


def leaf_datasets(node, path: str) -> Iterator[Tuple[str, dict]]:
    """Leaf dataset dicts of a dataloader, looking inside wrappers."""
    if not isinstance(node, dict):
        return
    if isinstance(node.get('dataset'), dict):
        yield from leaf_datasets(node['dataset'], f'{path}.dataset')
    elif node.get('datasets'):
        for i, sub in enumerate(node['datasets']):
            yield from leaf_datasets(sub, f'{path}.datasets[{i}]')
    else:
        yield path, node


def dataset_kind(ds: dict) -> str:
    name = str(ds.get('type', ''))
    if 'Coco' in name or 'coco' in str(ds.get('ann_file', '')).lower():
        return 'coco'
    if 'seg_map_path' in (ds.get('data_prefix') or {}) or name in (
            'ADE20KDataset', 'BaseSegDataset'):
        return 'seg'
    if name in ('ImageNet', 'CustomDataset', 'ImageNet21k'):
        return 'folders'
    return 'other'


def join_root(root: str, path: str) -> str:
    return path if osp.isabs(path) or not root else osp.join(root, path)


def data_prefixes(ds: dict) -> dict:
    prefix = ds.get('data_prefix') or {}
    return dict(prefix) if isinstance(prefix, dict) else {'': prefix}


def _expected(kind: str, ds: dict) -> List[str]:
    """The layout a dataset dict expects, as lines of paths."""
    root = ds.get('data_root') or ''
    ann = ds.get('ann_file') or ''
    pre = data_prefixes(ds)
    if kind == 'coco':
        return [join_root(root, ann) + '   (COCO json: images, annotations, '
                'categories)', join_root(root, pre.get('img', '')) + '*.jpg']
    if kind == 'seg':
        suffix = ds.get('seg_map_suffix', '.png')
        return [osp.join(join_root(root, pre.get('img_path', '')), '*' +
                         ds.get('img_suffix', '.jpg')),
                osp.join(join_root(root, pre.get('seg_map_path', '')), '*' +
                         suffix) + '   (label maps, same names)']
    if kind == 'folders':
        folder = pre.get('') or ds.get('split') or ''
        lines = [osp.join(join_root(root, folder), '<class>', '*.JPEG')]
        if ann:
            lines.append(join_root(root, ann) + '   (lines: <image> <label>)')
        return lines
    return [join_root(root, p)
            for p in list(pre.values()) + [ann] if p] or [root]


def _problem(kind: str, ds: dict) -> str:
    """What is wrong with a dataset on disk ('' when nothing)."""
    root = ds.get('data_root') or ''
    if root and not osp.isdir(root):
        return f'data_root={root!r} is not a directory'
    ann = ds.get('ann_file') or ''
    if ann:
        full = join_root(root, ann)
        if not osp.isfile(full):
            return f'ann_file={ann!r}: annotation file {full} does not exist'
        if kind == 'coco':
            problem = _coco_problem(full)
            if problem:
                return problem
    for key, sub in data_prefixes(ds).items():
        if not sub:
            continue
        full = join_root(root, sub)
        if not osp.isdir(full):
            return f'folder {full} does not exist'
        if not os.listdir(full):
            return f'folder {full} is empty'
    if kind == 'folders' and not ann:
        folder = join_root(root, data_prefixes(ds).get('')
                           or ds.get('split') or '')
        if not osp.isdir(folder):
            return f'folder {folder} does not exist'
        if not any(osp.isdir(osp.join(folder, d)) for d in os.listdir(folder)):
            return f'folder {folder} has no class sub-folders'
    return ''


def _coco_problem(path: str) -> str:
    if osp.getsize(path) > MAX_PARSED_JSON_BYTES:
        with open(path, 'rb') as f:
            head = f.read(64).lstrip()
        return '' if head.startswith(b'{') else \
            f'{path} is not a JSON object'
    try:
        with open(path) as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return f'{path} is not valid JSON ({e})'
    if not isinstance(data, dict):
        return f'{path} is not a COCO annotation file (not a JSON object)'
    missing = [k for k in ('images', 'annotations', 'categories')
               if not isinstance(data.get(k), list)]
    if missing:
        return (f'{path} is not a COCO annotation file: no '
                f'{" / ".join(missing)} list')
    if not data['images']:
        return f'{path} lists no images'
    return ''


def local_datasets(cfg, split: str) -> Iterator[Tuple[str, dict]]:
    """``(key, dataset dict)`` of every leaf dataset of the ``split``
    dataloader stored on the local disk (remote storage: nothing to check
    locally)."""
    loader = cfg.get(f'{split}_dataloader')
    if not isinstance(loader, dict):
        return
    for key, ds in leaf_datasets(loader.get('dataset'),
                                 f'{split}_dataloader.dataset'):
        backend = ds.get('backend_args') or {}
        if backend.get('backend', 'local') == 'local':
            yield key, ds


def check_dataset_layout(cfg, splits: Iterable[str]) -> None:
    """Raise :class:`DatasetLayoutError` if a dataset of the given
    dataloaders (``'train'``, ``'val'``, ``'test'``) or its evaluator's
    annotation file is missing or malformed."""
    for split in splits:
        for path, ds in local_datasets(cfg, split):
            kind = dataset_kind(ds)
            problem = _problem(kind, ds)
            if problem:
                layout = '\n'.join(f'  {line}' for line in _expected(kind, ds))
                raise DatasetLayoutError(
                    f'{path} ({ds.get("type")}): {problem} (working '
                    f'directory {os.getcwd()}).\nExpected layout:\n{layout}\n'
                    f'{FIX_HINT}')
        evaluator = cfg.get(f'{split}_evaluator')
        for ev in evaluator if isinstance(evaluator, list) else [evaluator]:
            ann = ev.get('ann_file') if isinstance(ev, dict) else None
            if isinstance(ann, str) and ann and '://' not in ann and \
                    not osp.isfile(ann):
                raise DatasetLayoutError(
                    f'{split}_evaluator.ann_file: {ann} does not exist '
                    f'(working directory {os.getcwd()}). {FIX_HINT}')
