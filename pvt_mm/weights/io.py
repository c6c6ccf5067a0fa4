"""Reading checkpoint files safely: ``torch.load(weights_only=True)`` (or
safetensors, which holds tensors only), and when torch refuses a file, an
error that says why (parsed from the unpickler's message) and how to
re-save it; never a silent fallback to executing the file's code.
"""
import os.path as osp
import pickle
import re
import zipfile

import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with the reason and the fix."""


class CorruptCheckpointError(CheckpointError):
    """A file that is no readable checkpoint at all (truncated, damaged, or
    not a checkpoint)."""


TRUST_PICKLE_HINT = ('If you trust its source, re-save just its state dict '
                     'with tools/model_converters/convert_checkpoint.py --trust-pickle.')


def _unpickler_reason(error: Exception) -> str:
    """The line of torch's long message that names what went wrong."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    return next((ln for ln in lines if any(
        word in ln for word in ('GLOBAL', 'Unsupported', 'Trying to',
                                'Can only'))),
                lines[0] if lines else type(error).__name__)


def _is_refusal(reason: str) -> bool:
    """Whether the restricted unpickler refused an object (as opposed to
    stumbling over bytes that are not a pickle at all)."""
    return any(word in reason for word in ('GLOBAL', 'global', 'Trying to',
                                           'Can only', 'getattr'))


def is_safetensors(path: str) -> bool:
    """Whether ``path`` is a safetensors file (by its name or, for a file
    cached under another name, its header: a little-endian length, then
    JSON)."""
    if path.endswith('.safetensors'):
        return True
    with open(path, 'rb') as f:
        head = f.read(9)
    return (len(head) == 9 and head[8:9] == b'{'
            and 0 < int.from_bytes(head[:8], 'little') < 100 * 2**20)


def load_safetensors(path: str) -> dict:
    """The tensors of a safetensors file (on the CPU)."""
    try:
        from safetensors.torch import load_file as read
    except ImportError as e:
        raise CheckpointError(
            f'{path} is a safetensors file; reading it needs the '
            f'safetensors package: pip install safetensors') from e
    try:
        return read(path, device='cpu')
    except Exception as e:  # safetensors raises its own SafetensorError
        raise CorruptCheckpointError(
            f'cannot read safetensors file {path}: the file is truncated or '
            f'corrupt ({type(e).__name__}: {e}). Download or save it '
            f'again.') from e


def load_file(path: str, map_location='cpu',
              refusal_hint: str = TRUST_PICKLE_HINT,
              trust_pickle: bool = False) -> dict:
    """``torch.load(weights_only=True)`` with errors that name the file: a
    missing file, one holding objects that could run code when unpickled
    (refused, never executed; ``refusal_hint`` says what to do), and a
    truncated or corrupt one. ``trust_pickle=True`` unpickles everything
    (only for files from a source you trust). ``.safetensors`` files are
    read with safetensors. URLs are fetched first by
    :func:`pvt_mm.weights.sources.local_file`."""
    if not isinstance(path, str) or not osp.isfile(path):
        raise CheckpointError(f'checkpoint {path!r} does not exist (give a '
                              f'local file path or a URL)')
    if is_safetensors(path):
        return load_safetensors(path)
    try:
        return torch.load(path, map_location=map_location,
                          weights_only=not trust_pickle)
    except pickle.UnpicklingError as e:
        reason = _unpickler_reason(e)
        if _is_refusal(reason):
            raise CheckpointError(
                f'refusing to load {path}: it holds an object other than '
                f'tensors, containers and allowlisted types, and unpickling '
                f'it could run code ({reason}). {refusal_hint}') from e
        error = e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        reason = f'{type(e).__name__}: ' + (str(e).splitlines()[0]
                                            if str(e) else '')
        error = e
    raise CorruptCheckpointError(
        f'cannot read checkpoint {path}: the file is truncated or corrupt '
        f'({reason}). Download or save it again, or use an earlier '
        f'checkpoint.') from error
