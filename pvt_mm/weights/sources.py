"""Where checkpoints come from: a local file, or a URL downloaded once into
torch hub's cache.

A checkpoint source is what ``init_cfg=dict(type='Pretrained',
checkpoint=...)``, ``load_from`` and the tools take:

- a local path;
- an ``http(s)://`` URL, downloaded into ``<torch hub dir>/checkpoints/``
  (``$TORCH_HOME/hub/checkpoints``, where MMEngine's and torchvision's
  loaders keep theirs, so a file one of them downloaded is reused) under
  the URL's file name; files on the Hugging Face hub, whose names repeat
  (``pytorch_model.bin``), are cached as ``<owner>--<repo>--<file>``.
  ``import pvt_mm.engine`` makes MMEngine's own ``http(s)://`` reads
  (``load_from``, other modules' ``Pretrained``) go through the same
  cache and checks (:mod:`pvt_mm.engine.checkpoint`);
- a scheme MMEngine's ``CheckpointLoader`` registers: ``open-mmlab://``,
  ``openmmlab://``, ``mmcls://`` and ``torchvision://`` name a URL (fetched
  as above); any other (``pavi://``, ``s3://``, ...) is read by MMEngine.

A download goes to a temporary file beside the cached one and is renamed
into place only once it is complete (its length as the server announced),
looks like a checkpoint (a torch zip or pickle, or safetensors, not an HTML
page) and, when an expected ``sha256`` (or a prefix of it, at least 8 hex
digits) is given, has that hash. A failed download keeps nothing; its
:class:`CheckpointDownloadError` names the URL, the cache path and how to
use a local file instead.
"""
import hashlib
import http.client
import os
import os.path as osp
import re
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Optional

from .io import CheckpointError

#: URL schemes downloaded here.
HTTP_SCHEMES = ('http://', 'https://')
#: Seconds without progress after which a download is given up.
TIMEOUT_S = 60
_CHUNK = 1 << 20
_HEX = re.compile(r'^[0-9a-fA-F]{8,64}$')


class CheckpointDownloadError(CheckpointError):
    """A checkpoint URL that could not be fetched into the cache."""


def is_remote(source) -> bool:
    """Whether ``source`` is a URL or another ``scheme://`` name (anything
    but a local path)."""
    return isinstance(source, str) and '://' in source


def cache_dir() -> str:
    """``<torch hub dir>/checkpoints``: torch hub's, MMEngine's and
    torchvision's checkpoint cache (``$TORCH_HOME/hub/checkpoints``,
    ``~/.cache/torch/hub/checkpoints`` by default)."""
    import torch.hub
    return osp.join(torch.hub.get_dir(), 'checkpoints')


def cache_name(url: str) -> str:
    """The file name ``url`` is cached under: its last path component (as
    torch hub and MMEngine name it), except on the Hugging Face hub, whose
    files share names across repositories (``/<owner>/<repo>/resolve/<rev>/
    <file>`` -> ``<owner>--<repo>--<file>``)."""
    parsed = urllib.parse.urlparse(url)
    name = osp.basename(parsed.path)
    parts = parsed.path.strip('/').split('/')
    if 'resolve' in parts and parts.index('resolve') == 2:
        name = '--'.join(parts[:2] + [name])
    if not name:
        raise CheckpointError(f'{url}: the URL names no file')
    return name


def cache_path(url: str) -> str:
    return osp.join(cache_dir(), cache_name(url))


def resolve_url(source: str) -> Optional[str]:
    """The ``http(s)://`` URL ``source`` stands for: itself, or the URL an
    MMEngine scheme (``open-mmlab://``, ``openmmlab://``, ``mmcls://``,
    ``torchvision://``) maps its name to; ``None`` for a scheme whose files
    are not at a URL (read them with MMEngine's loader)."""
    if source.startswith(HTTP_SCHEMES):
        return source
    from mmengine.runner import checkpoint as mm
    tables = {'open-mmlab://': mm.get_external_models,
              'openmmlab://': mm.get_external_models,
              'mmcls://': mm.get_mmcls_models,
              'torchvision://': mm.get_torchvision_models}
    for prefix, table in tables.items():
        if source.startswith(prefix):
            name = source[len(prefix):]
            urls = table()
            if name not in urls:
                raise CheckpointError(
                    f'{source}: MMEngine knows no model {name!r} under '
                    f'{prefix} (e.g. {", ".join(sorted(urls)[:5])})')
            url = urls[name]
            return url if url.startswith(HTTP_SCHEMES) else None
    return None


def _fix_hint(url: str, path: str, key: str) -> str:
    return (f'Without a network: download {url} yourself and put it at '
            f'{path} (it is then used as it is), or point the config at a '
            f'local copy: --cfg-options {key}=/path/to/{osp.basename(path)}')


def _kind_of(head: bytes) -> str:
    """'zip' / 'pickle' / 'safetensors' for the first bytes of a checkpoint,
    else a short description of what the bytes are."""
    if head.startswith(b'PK\x03\x04'):
        return 'zip'
    if head[:1] == b'\x80' and head[1:2] in (b'\x02', b'\x03', b'\x04',
                                               b'\x05'):
        return 'pickle'
    if len(head) >= 9 and head[8:9] == b'{':
        size = int.from_bytes(head[:8], 'little')
        if 0 < size < 100 * 2**20:
            return 'safetensors'
    text = head.lstrip()[:15].lower()
    if text.startswith((b'<!doctype html', b'<html', b'<head', b'<body')):
        return 'an HTML page'
    if text.startswith((b'{', b'[')):
        return 'a JSON document'
    if text.startswith(b'<'):
        return 'an XML/HTML document'
    return 'not a checkpoint'


def check_sha256(sha256: Optional[str], where: str) -> Optional[str]:
    """``sha256`` lower-cased, or an error if it is not 8-64 hex digits."""
    if sha256 is None:
        return None
    if not isinstance(sha256, str) or not _HEX.match(sha256):
        raise CheckpointError(
            f'{where}: sha256={sha256!r} must be the file\'s SHA-256 (or its '
            f'first 8 or more hex digits)')
    return sha256.lower()


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(_CHUNK), b''):
            digest.update(block)
    return digest.hexdigest()


def _hash_problem(actual: str, expected: Optional[str]) -> str:
    if expected and not actual.startswith(expected):
        return (f'its SHA-256 is {actual}, but {expected} was expected (a '
                f'different or damaged file)')
    return ''


def _log(message: str) -> None:
    from mmengine.logging import print_log
    print_log(message, logger='current')


def download(url: str, dest: str, sha256: Optional[str] = None,
             key: str = 'model.backbone.init_cfg.checkpoint',
             timeout: float = TIMEOUT_S) -> str:
    """Download ``url`` to ``dest`` through a temporary file renamed into
    place only when complete and checked (see the module docstring);
    return ``dest``. ``key`` names the config setting the fix hint
    overrides."""
    sha256 = check_sha256(sha256, url)
    hint = _fix_hint(url, dest, key)

    def fail(problem: str, cause: Exception = None):
        raise CheckpointDownloadError(
            f'could not download checkpoint {url}: {problem}. Nothing was '
            f'cached. {hint}') from cause

    os.makedirs(osp.dirname(dest), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=osp.dirname(dest),
                               prefix=osp.basename(dest) + '.partial-')
    start = time.time()
    try:
        request = urllib.request.Request(
            url, headers={'User-Agent': 'pvt_mm (torch hub cache)'})
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as e:
            fail(f'the server answered HTTP {e.code} {e.reason}', e)
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, 'reason', e)
            fail(f'the server cannot be reached ({reason})', e)
        digest = hashlib.sha256()
        received, head = 0, b''
        with response, os.fdopen(fd, 'wb') as out:
            fd = None
            length = response.headers.get('Content-Length')
            expected = int(length) if length and length.isdigit() else None
            _log(f'downloading {url} to {dest}'
                 + (f' ({expected / 2**20:.1f} MiB)' if expected else ''))
            try:
                for block in iter(lambda: response.read(_CHUNK), b''):
                    if len(head) < 64:
                        head += block[:64 - len(head)]
                    digest.update(block)
                    out.write(block)
                    received += len(block)
            except (http.client.IncompleteRead, OSError) as e:
                fail(f'the connection broke after {received} bytes'
                     + (f' of {expected}' if expected else ''), e)
        if expected is not None and received != expected:
            fail(f'the download is truncated: {received} of {expected} '
                 f'bytes')
        kind = _kind_of(head)
        if kind not in ('zip', 'pickle', 'safetensors'):
            ctype = response.headers.get('Content-Type') or 'no content type'
            fail(f'the server sent {kind} ({ctype}, {received} bytes), not '
                 f'a checkpoint; is the URL right?')
        problem = _hash_problem(digest.hexdigest(), sha256)
        if problem:
            fail(problem)
        os.replace(tmp, dest)
        tmp = None
    finally:
        if fd is not None:
            os.close(fd)
        if tmp is not None and osp.exists(tmp):
            os.remove(tmp)
    _log(f'downloaded {url} ({received / 2**20:.1f} MiB in '
         f'{time.time() - start:.1f} s) to {dest}')
    return dest


def fetch(url: str, sha256: Optional[str] = None,
          key: str = 'model.backbone.init_cfg.checkpoint') -> str:
    """The cached copy of ``url`` (downloaded first if the cache has none);
    a cached file is checked against ``sha256`` when given."""
    dest = cache_path(url)
    if osp.isfile(dest):
        sha256 = check_sha256(sha256, url)
        problem = _hash_problem(file_sha256(dest), sha256) if sha256 else ''
        if problem:
            os.remove(dest)
            raise CheckpointDownloadError(
                f'the cached copy of {url} at {dest} does not match: '
                f'{problem}; it was removed, run again to download it anew')
        return dest
    return download(url, dest, sha256, key)


def local_file(source: str, sha256: Optional[str] = None,
               key: str = 'model.backbone.init_cfg.checkpoint') -> str:
    """The local file ``source`` names: the path itself, or the cached
    copy of the URL it is or stands for (downloaded if needed). A missing
    local file and a scheme without a URL are errors saying what to do."""
    if not isinstance(source, str) or not source:
        raise CheckpointError(f'{key}={source!r}: give a local file path or '
                              f'an http(s):// URL')
    if not is_remote(source):
        if not osp.isfile(source):
            raise CheckpointError(
                f'checkpoint {source!r} does not exist (working directory '
                f'{os.getcwd()}). Give a local file or the checkpoint\'s '
                f'URL: --cfg-options {key}=PATH_OR_URL')
        sha256 = check_sha256(sha256, source)
        problem = _hash_problem(file_sha256(source), sha256) if sha256 else ''
        if problem:
            raise CheckpointError(f'checkpoint {source}: {problem}')
        return source
    url = resolve_url(source)
    if url is None:
        raise CheckpointError(
            f'{source}: this scheme is read by MMEngine\'s CheckpointLoader, '
            f'not downloaded to a file')
    return fetch(url, sha256, key)


__all__ = ['CheckpointDownloadError', 'HTTP_SCHEMES', 'cache_dir',
           'cache_name', 'cache_path', 'download', 'fetch', 'file_sha256',
           'is_remote', 'local_file', 'resolve_url']
