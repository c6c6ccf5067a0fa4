"""Training checkpoints that load without running code and save atomically.

Loading. torch >= 2.6 unpickles with ``weights_only=True``: only tensors,
plain containers and allowlisted types. MMEngine 0.10 checkpoints also hold
numpy arrays, numpy dtypes and scalars and the message hub's
:class:`~mmengine.logging.HistoryBuffer` (which pickles its statistics
methods as ``getattr(HistoryBuffer, 'mean')``), so ``runner.resume()``
fails on MMEngine's own files. :func:`enable_safe_checkpoints` allowlists
exactly those types (``getattr`` only for the four HistoryBuffer methods,
never in general) and makes MMEngine read local files through
:func:`load_from_local`, which passes ``weights_only=True`` explicitly and
turns failures into :class:`~pvt_mm.models.CheckpointError` naming the file.

Saving. :class:`AtomicLocalBackend` writes a file under a temporary name in
the same directory, flushes it to disk, then renames it over the target, so
a crash leaves either the old file or the complete new one.
"""
import os
import os.path as osp
import pickle
from typing import List

import numpy as np
import torch
from mmengine.fileio import LocalBackend, register_backend
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader
from mmengine.utils import digit_version

from pvt_mm.weights.io import load_file
from pvt_mm.weights.sources import fetch

#: Name of :class:`AtomicLocalBackend` in MMEngine's file-backend registry.
ATOMIC_BACKEND = 'pvt_mm_atomic_local'
#: Infix of the temporary files :func:`atomic_write` renames into place.
TMP_INFIX = '.tmp-'

# The statistics HistoryBuffer pickles by reference (see module docstring).
_HISTORY_BUFFER_METHODS = ('min', 'max', 'mean', 'current')


def history_buffer_getattr(obj, name: str):
    """Stand-in for ``builtins.getattr`` while unpickling: returns only
    ``HistoryBuffer.min/max/mean/current``; anything else is refused."""
    if obj is HistoryBuffer and name in _HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'Unsupported call getattr({obj!r}, {name!r}): pvt_mm allows getattr '
        f'only for HistoryBuffer.{"/".join(_HISTORY_BUFFER_METHODS)}')


def safe_globals() -> List:
    """Everything beyond tensors and containers that MMEngine training
    checkpoints hold, for ``torch.serialization.add_safe_globals``.

    numpy's array/scalar constructors only rebuild raw bytes (object
    dtypes still go through the restricted unpickler); they are listed
    under numpy 1 and numpy 2 module paths so that checkpoints written with
    either load with either.
    """
    core = getattr(np, '_core', None) or np.core
    items = [np.ndarray, np.dtype, HistoryBuffer,
             (history_buffer_getattr, 'builtins.getattr')]
    dtypes = getattr(np, 'dtypes', None)  # numpy >= 1.25
    if dtypes is not None:
        items += [getattr(dtypes, n) for n in dir(dtypes)
                  if n.endswith('DType')]
    for module in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        items += [(core.multiarray._reconstruct, f'{module}._reconstruct'),
                  (core.multiarray.scalar, f'{module}.scalar')]
    return items


def load_from_local(filename: str, map_location=None) -> dict:
    """Read a local checkpoint with ``weights_only=True``; raise
    :class:`CheckpointError` naming the file when it is refused or broken
    (:func:`pvt_mm.weights.io.load_file`).

    Registered as MMEngine's loader for local paths by
    :func:`enable_safe_checkpoints` (``runner.resume``, ``load_from``,
    ``load_checkpoint`` and ``init_cfg=dict(type='Pretrained')`` of
    non-pvt_mm modules all read through it).
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(
            f'checkpoint {filename} does not exist. Give the path of an '
            f'existing file, or resume with --resume and no path to continue '
            f'from the newest checkpoint named in <work_dir>/last_checkpoint.')
    return load_file(
        filename, map_location,
        refusal_hint='If you wrote this file yourself and trust every object '
        'in it, allowlist that type with '
        'torch.serialization.add_safe_globals([...]).')


def load_from_http(filename: str, map_location=None, **_) -> dict:
    """MMEngine's ``http(s)://`` checkpoints (``load_from``, ``Pretrained``
    of non-pvt_mm modules) through pvt_mm's cache: downloaded once into
    torch hub's cache with a temporary file renamed when complete and
    checked (:func:`pvt_mm.weights.sources.fetch`), then read like a local
    file (``weights_only=True``). MMEngine's own loader would unpickle
    the download with ``weights_only=False``."""
    return load_from_local(fetch(filename, key='load_from'), map_location)


def atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` all-or-nothing: temporary file in the same
    directory, ``fsync``, then ``os.replace`` (atomic on POSIX and Windows)."""
    path = str(path)
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f'{path}{TMP_INFIX}{os.getpid()}'
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    if hasattr(os, 'O_DIRECTORY'):  # make the rename itself durable (POSIX)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class AtomicLocalBackend(LocalBackend):
    """MMEngine's local file backend with atomic ``put`` / ``put_text``.

    Select it with ``backend_args=dict(backend='pvt_mm_atomic_local')``
    (what :class:`~pvt_mm.engine.AtomicCheckpointHook` does by default).
    """

    def put(self, obj: bytes, filepath) -> None:
        atomic_write(filepath, obj)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        atomic_write(filepath, obj.encode(encoding))


#: ``PVT_MM_SAFE_CHECKPOINTS=0``: ``import pvt_mm.engine`` leaves torch's
#: allowlist and MMEngine's local checkpoint loader as they are.
OFF_SWITCH = 'PVT_MM_SAFE_CHECKPOINTS'


def safe_checkpoints_wanted() -> bool:
    """Whether ``import pvt_mm.engine`` calls :func:`enable_safe_checkpoints`
    (unless ``PVT_MM_SAFE_CHECKPOINTS`` is ``0``/``false``/``off``)."""
    return os.environ.get(OFF_SWITCH, '1').strip().lower() not in (
        '0', 'false', 'no', 'off')


def enable_safe_checkpoints() -> None:
    """Allowlist MMEngine's checkpoint types for ``weights_only`` loading,
    route MMEngine's local checkpoint reads through :func:`load_from_local`
    and its ``http(s)://`` reads through :func:`load_from_http`, and
    register :class:`AtomicLocalBackend`. Idempotent; ``import
    pvt_mm.engine`` calls it unless ``PVT_MM_SAFE_CHECKPOINTS=0``.

    Needs torch >= 2.6 (``weights_only`` by default, allowlist entries
    under a name); with an older torch MMEngine's loader is left as it is.
    """
    register_backend(ATOMIC_BACKEND, AtomicLocalBackend, force=True)
    if digit_version(torch.__version__) < digit_version('2.6.0'):
        return
    torch.serialization.add_safe_globals(safe_globals())
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local,
                                     force=True)
    CheckpointLoader.register_scheme(prefixes=('http://', 'https://'),
                                     loader=load_from_http, force=True)
