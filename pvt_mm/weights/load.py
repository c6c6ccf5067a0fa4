"""Loading pretrained weights: in any published layout, strictly.

Each family names the checkpoint layouts it reads (``checkpoint_formats``,
from :mod:`pvt_mm.weights.formats`: a detector and a converter to our keys
per layout). :func:`load_pretrained` reads a file without executing code
(:mod:`pvt_mm.weights.io`), unwraps it, detects its layout among the
model's family's (exactly one must match), converts it and loads it,
failing with the file name and the offending keys unless every backbone
weight was matched.
"""
import os
import re
from collections import OrderedDict
from typing import Optional, Sequence, Tuple

import torch
from mmengine.logging import print_log

from .formats import FAMILY_FORMATS, CheckpointFormat, StateDict
from .io import CheckpointError, CorruptCheckpointError, load_file
from .sources import is_remote, local_file, resolve_url

_WRAPPERS = ('state_dict', 'model', 'module', 'model_state', 'params')
_PREFIXES = ('module.', 'backbone.', 'pvt.', 'pvt_v2.', 'cvt.', 'model.')


def find_state_dict(obj) -> StateDict:
    """The tensors of ``obj`` with ``state_dict``/``model``/... wrappers
    removed (keys unchanged)."""
    while isinstance(obj, dict) and not any(
            isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), dict)),
                     None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict):
        raise CheckpointError(f'checkpoint holds a {type(obj).__name__}, not '
                              f'a state dict')
    return OrderedDict((k, v) for k, v in obj.items()
                       if isinstance(v, torch.Tensor))


def unwrap(obj, prefix: Optional[str] = None) -> StateDict:
    """The tensor dict inside ``obj``: ``state_dict``/``model`` wrappers
    and ``module.``/``backbone.``/HF model prefixes removed. With ``prefix``,
    only keys under it are kept (e.g. ``'backbone.'`` of a detector)."""
    sd = find_state_dict(obj)
    if prefix:
        sd = OrderedDict((k[len(prefix):], v) for k, v in sd.items()
                         if k.startswith(prefix))
        return sd
    changed = True
    while changed and sd:
        changed = False
        for p in _PREFIXES:
            under = [k for k in sd if k.startswith(p)]
            # A prefix shared by every key, or the backbone of a detector.
            if under and (len(under) == len(sd) or p == 'backbone.'):
                sd = OrderedDict((k[len(p):], sd[k]) for k in under)
                changed = True
    return sd


def detect_format(sd: StateDict, formats: Sequence[CheckpointFormat],
                  source: str = 'checkpoint') -> Optional[CheckpointFormat]:
    """The one layout of ``formats`` that ``sd`` has, ``None`` if none;
    a :class:`CheckpointError` if several match (an ambiguous layout must be
    resolved in the detectors, never by their order)."""
    found = [f for f in formats if f.detect(sd)]
    if len(found) > 1:
        raise CheckpointError(
            f'{source}: its keys match several checkpoint layouts ('
            + '; '.join(f'{f.family} {f.name}' for f in found) + '); '
            f'this is a bug in pvt_mm.weights.formats, please report it')
    return found[0] if found else None


def _matches(key: str, patterns) -> bool:
    return any(re.search(p, key) for p in patterns)


def convert_state_dict(sd: StateDict, family: Optional[str] = None,
                       source: str = 'checkpoint', target: str = None,
                       formats: Optional[Sequence[CheckpointFormat]] = None
                       ) -> Tuple[CheckpointFormat, StateDict]:
    """Detect ``sd``'s layout and convert it to our keys; return
    ``(format, converted)``. With ``family``, only that family's layouts
    (``formats``, default ``FAMILY_FORMATS[family]``) are tried, and weights
    of another family are an error (``target`` names the model they were
    meant for); without, every family's."""
    families = [family] if family is not None else list(FAMILY_FORMATS)
    candidates = {name: FAMILY_FORMATS[name] for name in families}
    if family is not None and formats is not None:
        candidates[family] = formats
    for name, own in candidates.items():
        fmt = detect_format(sd, own, source)
        if fmt is not None:
            return fmt, fmt.convert(sd)
    other = [f for name, formats in FAMILY_FORMATS.items()
             if name not in families
             for f in [detect_format(sd, formats, source)] if f is not None]
    if other:
        fmt = other[0]
        raise CheckpointError(
            f'{source} holds {fmt.name} weights of the {fmt.family} family, '
            f'but the model is {target or family} ({family}); use a {family} '
            f'checkpoint or change the backbone type')
    sample = ', '.join(list(sd)[:5])
    raise CheckpointError(
        f'{source}: unrecognised key layout (first keys: {sample}). '
        f'Supported: ' + '; '.join(f'{f.family} {f.name}'
                                   for own in candidates.values() for f in own))


def read_checkpoint(source: str, sha256: Optional[str] = None,
                    key: str = 'model.backbone.init_cfg.checkpoint'):
    """The object a checkpoint source holds: a local file, or a URL's
    cached copy (downloaded once; checked against ``sha256`` when given),
    read with ``weights_only=True``; a cached copy torch cannot read is
    removed, so the next run downloads it anew. Schemes that name no URL
    (``pavi://``, ``s3://``, ...) are read by MMEngine's
    ``CheckpointLoader``. ``key`` is the config setting error messages
    tell the user to override."""
    if is_remote(source) and resolve_url(source) is None:
        from mmengine.runner import CheckpointLoader
        return CheckpointLoader.load_checkpoint(source, map_location='cpu')
    path = local_file(source, sha256, key)
    try:
        return load_file(path)
    except CorruptCheckpointError as e:
        if not is_remote(source):
            raise
        os.remove(path)
        raise CorruptCheckpointError(
            f'{source}: its cached copy {path} cannot be read and was '
            f'removed; run again to download it anew ({e})') from e


def load_pretrained(model, path: str, prefix: Optional[str] = None,
                    allow_partial: bool = False,
                    sha256: Optional[str] = None) -> dict:
    """Load ``path`` (a local file or a URL, see :func:`read_checkpoint`)
    into ``model`` strictly; return a report dict.

    Missing backbone weights, shape mismatches and unexpected keys raise a
    :class:`CheckpointError` naming them, unless ``allow_partial``; keys of
    the classification head / class token are listed as leftovers only.
    """
    sd = unwrap(read_checkpoint(path, sha256), prefix)
    if not sd:
        raise CheckpointError(f'{path}: no tensors found'
                              + (f' under prefix {prefix!r}' if prefix else ''))
    fmt, sd = convert_state_dict(sd, model.family, path, type(model).__name__,
                                 formats=model.checkpoint_formats)
    own = model.state_dict()
    missing = [k for k in own if k not in sd
               and not _matches(k, model.fresh_patterns)]
    extra = [k for k in sd if k not in own]
    leftovers = [k for k in extra if _matches(k, model.leftover_patterns)]
    unexpected = [k for k in extra if k not in leftovers]
    mismatched = [f'{k}: checkpoint {tuple(sd[k].shape)} vs model '
                  f'{tuple(own[k].shape)}' for k in sd
                  if k in own and sd[k].shape != own[k].shape]
    loadable = OrderedDict((k, v) for k, v in sd.items()
                           if k in own and v.shape == own[k].shape)
    problems = []
    if missing:
        problems.append(f'{len(missing)} model weights missing from the '
                        f'checkpoint: {", ".join(missing[:20])}')
    if mismatched:
        problems.append(f'{len(mismatched)} shape mismatches: '
                        + '; '.join(mismatched[:20]))
    if unexpected:
        problems.append(f'{len(unexpected)} checkpoint weights the model has '
                        f'no place for: {", ".join(unexpected[:20])}')
    if not loadable:
        raise CheckpointError(f'{path}: no weight of the checkpoint matches '
                              f'{type(model).__name__}. ' + ' '.join(problems))
    if problems and not allow_partial:
        raise CheckpointError(
            f'{path} ({fmt.name}) does not fit {type(model).__name__} '
            f'(wrong arch?):\n  ' + '\n  '.join(problems) +
            "\nPass init_cfg=dict(type='Pretrained', checkpoint=..., "
            'allow_partial=True) only if a partial load is really intended.')
    model.load_state_dict(loadable, strict=False)
    report = dict(format=fmt.name, loaded=len(loadable), total=len(own),
                  missing=missing, mismatched=mismatched,
                  unexpected=unexpected, leftovers=leftovers)
    print_log(f'{type(model).__name__}: loaded {len(loadable)}/{len(own)} '
              f'tensors from {path} ({fmt.family} {fmt.name})'
              + (f'; ignored classification leftovers: {", ".join(leftovers)}'
                 if leftovers else '')
              + (f'; PARTIAL LOAD: {" ".join(problems)}' if problems else ''),
              logger='current')
    return report
