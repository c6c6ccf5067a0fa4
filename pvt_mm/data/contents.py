"""A dataset's contents against its config, checked before training starts.

:mod:`.layout` checks that the files are where the config says; this
module checks that they fit it (what ``tools/misc/check_dataset.py`` prints
and ``tools/train.py`` / ``test.py`` run at start):

- COCO-format detection and instance segmentation: the config's classes
  (``metainfo.classes``, else the dataset type's default, e.g. COCO's 80)
  against the annotation file's category names. MMDetection keeps the
  file's categories that the config names, *in the file's order*, and
  numbers them 0, 1, ...; every image without such an annotation is
  filtered out of training (all of them: MMEngine's "need at least one
  array to concatenate"), and a different order gives label i to another
  category than the config's i-th name. Then every ``num_classes`` of the
  model's heads (RPN's excepted) against the class count, how many
  training images survive ``filter_cfg`` (zero is an error), and images
  the annotation file names that the image folder lacks.
- ADE20K-style segmentation: the label values of a sample of the masks,
  after ``reduce_zero_label``, against ``num_classes`` of the decode heads.

Errors (:class:`DatasetContentError`) say what is wrong, show the two
sides, and give the config lines that fix it; what is merely worth knowing
(categories the config leaves out, images filtered) is returned as notes.
"""
import importlib
import inspect
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .layout import data_prefixes, dataset_kind, join_root, local_datasets

#: How many masks of a segmentation dataset are read (evenly spread).
SEG_SAMPLE = 32
#: How many names an error lists.
SHOW = 5
IGNORE_INDEX = 255


class DatasetContentError(ValueError):
    """A dataset whose contents do not fit the config, with the fix."""


def _model_num_classes(model) -> List[Tuple[str, int]]:
    """``(key, value)`` of every ``num_classes`` in the model config except
    the RPN's (one foreground class by design)."""
    found = []

    def walk(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                sub = f'{path}.{key}'
                if key == 'rpn_head':
                    continue
                if key == 'num_classes' and isinstance(value, int):
                    found.append((sub, value))
                else:
                    walk(value, sub)
        elif isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                walk(value, f'{path}[{i}]')

    walk(model, 'model')
    return found


def _dataset_class(cfg, type_name):
    """The registered dataset class of ``type_name`` in the config's
    library (None when it cannot be found)."""
    scope = cfg.get('default_scope')
    try:
        registry = importlib.import_module(f'{scope}.registry').DATASETS
        return registry.get(type_name)
    except (ImportError, AttributeError, KeyError):
        return None


def _classes(cfg, ds: dict) -> Tuple[Optional[List[str]], str]:
    """The dataset's class names and where they come from."""
    meta = ds.get('metainfo') or {}
    if meta.get('classes'):
        return list(meta['classes']), 'metainfo.classes'
    cls = _dataset_class(cfg, ds.get('type'))
    classes = getattr(cls, 'METAINFO', {}).get('classes') if cls else None
    if classes:
        return list(classes), f'the default classes of {ds.get("type")}'
    return None, ''


def _listing(names: Sequence[str]) -> str:
    names = list(names)
    shown = ', '.join(repr(n) for n in names[:12])
    return shown + (f', ... ({len(names)} in all)' if len(names) > 12 else '')


def _side_by_side(left: Sequence[str], right: Sequence[str], head: Tuple[
        str, str], mark: bool = False, rows: int = 12) -> str:
    width = max([len(head[0])] + [len(str(n)) for n in left[:rows]]) + 2
    lines = [f'    label  {head[0]:<{width}}{head[1]}']
    for i in range(min(rows, max(len(left), len(right)))):
        a = left[i] if i < len(left) else '-'
        b = right[i] if i < len(right) else '-'
        flag = '   <- differs' if mark and a != b else ''
        lines.append(f'    {i:<5}  {a:<{width}}{b}{flag}')
    if max(len(left), len(right)) > rows:
        lines.append(f'    ...    ({len(left)} / {len(right)} in all)')
    return '\n'.join(lines)


def _fix_lines(classes: Sequence[str], heads: Sequence[str]) -> str:
    names = ', '.join(repr(n) for n in classes)
    comma = ',' if len(classes) == 1 else ''
    heads = heads or ['model.bbox_head.num_classes']
    return (f'  metainfo = dict(classes=({names}{comma}))   # and '
            f'metainfo=metainfo in train/val/test_dataloader.dataset\n'
            f'  {" / ".join(heads)} = {len(classes)}')


def _load_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def check_coco(cfg, key: str, ds: dict) -> List[str]:
    """Check one COCO-format dataset dict; return notes, raise
    :class:`DatasetContentError` on a problem."""
    root = ds.get('data_root') or ''
    ann_path = join_root(root, ds.get('ann_file') or '')
    where = f'{key} ({ds.get("type")}, {ann_path})'
    data = _load_json(ann_path)
    categories = [c for c in data.get('categories', []) if isinstance(c, dict)]
    file_names = [str(c.get('name')) for c in categories]
    classes, origin = _classes(cfg, ds)
    notes = []
    heads = [k for k, _ in _model_num_classes(cfg.get('model'))]
    if classes is None:
        return [f'{where}: the dataset type sets no classes; not checked']
    wanted = set(classes)
    matched = [n for n in file_names if n in wanted]
    if not matched:
        raise DatasetContentError(
            f'{where}: none of the config\'s {len(classes)} classes ('
            f'{origin}) is a category of the annotation file, so MMDetection '
            f'would drop every image and fail with "need at least one array '
            f'to concatenate".\n'
            + _side_by_side(classes, file_names,
                            ('config class', 'annotation file category'))
            + '\nFix: name the file\'s categories in the config and size '
              'the heads to them:\n' + _fix_lines(file_names, heads))
    if matched != classes[:len(matched)]:
        raise DatasetContentError(
            f'{where}: the annotation file\'s categories that the config '
            f'names come in another order than the config\'s classes '
            f'({origin}). MMDetection numbers them in the file\'s order, '
            f'so label i would be trained on the file\'s i-th category '
            f'under the config\'s i-th name:\n'
            + _side_by_side(classes, matched, ('config class',
                                               'trained on (file)'), mark=True)
            + '\nFix: list the classes in the file\'s order:\n'
            + _fix_lines(matched, heads))
    unused = [n for n in file_names if n not in wanted]
    absent = [n for n in classes if n not in set(file_names)]
    ids = {c.get('id') for c in categories if c.get('name') in wanted}
    anns = [a for a in data.get('annotations', []) if isinstance(a, dict)]
    if unused:
        skipped = sum(1 for a in anns if a.get('category_id') not in ids)
        notes.append(f'{key}: {skipped} annotations of {len(unused)} '
                     f'categories the config does not name are ignored '
                     f'({_listing(unused)})')
    if absent:
        notes.append(f'{key}: {len(absent)} classes of the config have no '
                     f'category in the file ({_listing(absent)})')
    images = [i for i in data.get('images', []) if isinstance(i, dict)]
    missing = _missing_images(ds, images)
    if missing:
        folder = join_root(root, data_prefixes(ds).get('img', ''))
        raise DatasetContentError(
            f'{where}: {len(missing)} of {len(images)} images the annotation '
            f'file lists are not in {folder} (first: '
            f'{", ".join(missing[:SHOW])}); the run would stop at the '
            f'first. Copy them there, or remove them from the annotation '
            f'file.')
    if not ds.get('test_mode', False):
        notes += _survivors(key, where, ds, images, anns, ids)
    return notes


def _missing_images(ds: dict, images: List[dict]) -> List[str]:
    folder = join_root(ds.get('data_root') or '',
                       data_prefixes(ds).get('img', ''))
    present = set()
    for dirpath, _, files in os.walk(folder):
        rel = osp.relpath(dirpath, folder)
        present.update(f if rel == '.' else osp.join(rel, f) for f in files)
    return [str(i.get('file_name')) for i in images
            if osp.normpath(str(i.get('file_name'))) not in present]


def _survivors(key, where, ds, images, anns, ids) -> List[str]:
    """How many training images MMDetection's ``filter_cfg`` keeps (its
    rule: an annotation of a kept category when ``filter_empty_gt``, and
    the shorter side >= ``min_size``); none is an error."""
    filt = ds.get('filter_cfg') or {}
    empty_gt = filt.get('filter_empty_gt', False)
    min_size = filt.get('min_size', 0) or 0
    with_ann = {a.get('image_id') for a in anns if a.get('category_id') in ids}
    kept = [i for i in images
            if (not empty_gt or i.get('id') in with_ann)
            and min(i.get('width', 0), i.get('height', 0)) >= min_size]
    if kept:
        return [] if len(kept) == len(images) else [
            f'{key}: filter_cfg keeps {len(kept)} of {len(images)} training '
            f'images']
    reasons = []
    if empty_gt:
        no_ann = sum(1 for i in images if i.get('id') not in with_ann)
        reasons.append(f'{no_ann} have no annotation of the config\'s '
                       f'classes (filter_empty_gt=True)')
    if min_size:
        small = sum(1 for i in images
                    if min(i.get('width', 0), i.get('height', 0)) < min_size)
        reasons.append(f'{small} have a side shorter than min_size='
                       f'{min_size}')
    raise DatasetContentError(
        f'{where}: filter_cfg={dict(filt)} leaves no training image of '
        f'{len(images)}: {"; ".join(reasons)}. MMEngine would fail with '
        f'"need at least one array to concatenate". Fix the annotations, '
        f'or relax {key}.filter_cfg (e.g. min_size=0).')


def _reduce_zero_label(cfg, ds: dict) -> bool:
    """Whether label 0 becomes 255 and the rest shift down by one: the
    pipeline's ``LoadAnnotations`` setting where it gives one, else the
    dataset's (its type's default if the config sets none)."""
    for step in ds.get('pipeline') or []:
        if isinstance(step, dict) and step.get('type') == 'LoadAnnotations' \
                and step.get('reduce_zero_label') is not None:
            return bool(step['reduce_zero_label'])
    if 'reduce_zero_label' in ds:
        return bool(ds['reduce_zero_label'])
    cls = _dataset_class(cfg, ds.get('type'))
    if cls is None:
        return False
    param = inspect.signature(cls.__init__).parameters.get('reduce_zero_label')
    return bool(param.default) if param is not None and \
        param.default is not inspect.Parameter.empty else False


def check_seg(cfg, key: str, ds: dict) -> List[str]:
    """Check the label values of a sample of a segmentation dataset's masks
    (after ``reduce_zero_label``) against the decode heads' ``num_classes``
    and the dataset's classes; return notes."""
    from PIL import Image
    root = ds.get('data_root') or ''
    folder = join_root(root, data_prefixes(ds).get('seg_map_path', ''))
    suffix = ds.get('seg_map_suffix', '.png')
    files = sorted(f for f in os.listdir(folder) if f.endswith(suffix)) \
        if osp.isdir(folder) else []
    if not files:
        return []
    step = max(1, len(files) // SEG_SAMPLE)
    sample = files[::step][:SEG_SAMPLE]
    raw: Dict[int, str] = {}
    for name in sample:
        for v in np.unique(np.asarray(Image.open(osp.join(folder, name)))):
            raw.setdefault(int(v), name)
    reduce = _reduce_zero_label(cfg, ds)

    def label(v):
        if v == IGNORE_INDEX:
            return IGNORE_INDEX
        if reduce:
            return IGNORE_INDEX if v == 0 else v - 1
        return v

    labels = {label(v) for v in raw} - {IGNORE_INDEX}
    heads = _model_num_classes(cfg.get('model'))
    classes, origin = _classes(cfg, ds)
    where = f'{key} ({ds.get("type")}, {folder})'
    limits = list(heads) + ([(f'{key}: {origin}', len(classes))]
                            if classes else [])
    for head, n in limits:
        bad = sorted(v for v in labels if v >= n)
        if not bad:
            continue
        first = next(name for v, name in raw.items() if label(v) in bad)
        hint = ''
        if not reduce and max(labels) == n:
            hint = (' One label too many: if 0 means "unlabelled" in these '
                    'masks (ADE20K\'s convention), set reduce_zero_label=True '
                    'on the dataset.')
        raise DatasetContentError(
            f'{where}: the masks hold labels {bad[:SHOW]} (after '
            f'reduce_zero_label={reduce}; e.g. {first}), but {head} is '
            f'{n}: labels must be 0..{n - 1} or {IGNORE_INDEX} (ignored).'
            f'{hint} Otherwise set the classes and num_classes to the '
            f'masks\' {max(labels) + 1} labels.')
    return [f'{key}: {len(sample)} of {len(files)} masks read, labels '
            f'{min(labels) if labels else "-"}..'
            f'{max(labels) if labels else "-"} (reduce_zero_label={reduce})']


def _check_num_classes(cfg, key: str, ds: dict) -> None:
    classes, origin = _classes(cfg, ds)
    if classes is None:
        return
    for head, n in _model_num_classes(cfg.get('model')):
        if n != len(classes):
            raise DatasetContentError(
                f'{head}={n}, but {key} has {len(classes)} classes ({origin}:'
                f' {_listing(classes)}). Set {head}={len(classes)} (every '
                f'head: ' + ', '.join(h for h, _ in _model_num_classes(
                    cfg.get('model'))) + ')')


def check_dataset_contents(cfg, splits: Sequence[str]) -> List[str]:
    """Check the datasets of ``splits`` against the config (module
    docstring); return notes for the user, raise
    :class:`DatasetContentError` on the first problem. Datasets on remote
    storage and dataset kinds other than COCO and segmentation folders are
    skipped."""
    notes = []
    for split in splits:
        for key, ds in local_datasets(cfg, split):
            kind = dataset_kind(ds)
            if kind == 'coco':
                notes += check_coco(cfg, key, ds)
                _check_num_classes(cfg, key, ds)
            elif kind == 'seg':
                notes += check_seg(cfg, key, ds)
                _check_num_classes(cfg, key, ds)
    return notes


__all__ = ['DatasetContentError', 'check_coco', 'check_dataset_contents',
           'check_seg']
