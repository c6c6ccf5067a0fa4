"""Let MMEngine resolve ``pkg::path/to/config.py`` base configs: ``pvt_mm::``
and every OpenMMLab package's, in any environment.

Two gaps in MMEngine 0.10 (its last release) are closed here:

* ``pvt_mm::X``: MMEngine resolves ``pkg::`` only for a hard-coded list of
  OpenMMLab packages, and looks for ``<site-packages>/<pkg>/.mim/configs``,
  which does not exist for editable installs. ``pvt_mm::X`` resolves to
  ``<pvt_mm package dir>/.mim/configs/X`` (a link to the repo's ``configs/``
  in a checkout, a copy in a wheel).
* ``mmdet::X``, ``mmseg::X``, ...: MMEngine finds packages with
  ``pkg_resources`` (``mmengine.utils.package_utils``), which setuptools >= 82
  no longer ships, so in a fresh environment (torch pulls in the newest
  setuptools) no ``pkg::`` base resolves at all, and where it still exists it
  warns that it is deprecated on every use. The three functions of that module
  that use it are replaced by equivalents on ``importlib.metadata`` and
  ``importlib.util.find_spec`` (:func:`is_installed`,
  :func:`get_installed_path`, :func:`package2module`). They answer as
  MMEngine's do, except that a package's directory is the one Python would
  import it from, so editable installs resolve too.

It is a top-level module so that importing it costs nothing. ``import pvt_mm``
applies it, and, so that configs parse before anything imports pvt_mm (e.g.
MMDetection's own ``tools/train.py``), so does the ``pvt_mm_config.pth`` file
that the wheel installs (:data:`PTH_LINE`) at interpreter start-up: it puts a
finder on ``sys.meta_path`` that patches the two MMEngine modules right after
they are first imported, without importing them early.
docs/process_wide_changes.md lists this with its off switch.
"""
import importlib.util
import os
import os.path as osp
import sys

PREFIX = 'pvt_mm::'
#: ``PVT_MM_CONFIG_HOOK=0`` leaves MMEngine untouched (then ``pvt_mm::`` base
#: paths do not resolve, nor, without ``pkg_resources``, any ``pkg::``).
#: docs/process_wide_changes.md.
OFF_SWITCH = 'PVT_MM_CONFIG_HOOK'
#: The name and the one line of the start-up file (setup.py puts it in the
#: wheel, :func:`install_pth` next to an editable install).
PTH_NAME = 'pvt_mm_config.pth'
PTH_LINE = ('import pvt_mm_config_hook; '
            'pvt_mm_config_hook.install_import_hook()\n')

PACKAGE_UTILS = 'mmengine.utils.package_utils'
CONFIG_MODULE = 'mmengine.config.config'
#: Modules that bind the replaced functions by name (``from .package_utils
#: import ...``); rebound too when they were imported before the hook.
_IMPORTERS = ('mmengine.utils', CONFIG_MODULE, 'mmengine.hub.hub')
_REPLACED = ('is_installed', 'get_installed_path', 'package2module')


def enabled() -> bool:
    return os.environ.get(OFF_SWITCH, '1').strip().lower() not in (
        '0', 'false', 'no', 'off')


def configs_dir(package: str = 'pvt_mm') -> str:
    """``<package dir>/.mim/configs``: where an OpenMMLab package ships its
    configs (``pkg::path`` names resolve there). The one place this path is
    computed (pvt_mm.swap, the compatibility matrix and the hook use it);
    a ``FileNotFoundError`` names a package that is not installed."""
    spec = _top_level_spec(package)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f'package {package!r} is not installed, so '
                                f'its configs ({package}::...) are not there')
    return osp.join(osp.dirname(spec.origin), '.mim', 'configs')


def config_path(name: str) -> str:
    """The file of a config named ``pkg::path`` (``mmdet::``, ``mmseg::``,
    ``pvt_mm::``: ``<package>/.mim/configs/path``), or ``name`` itself when
    it is a plain path. A ``FileNotFoundError`` names a package that is not
    installed or a config it does not ship."""
    if '::' not in name:
        return name
    pkg, rel = name.split('::', 1)
    try:
        path = osp.join(configs_dir(pkg), rel)
    except FileNotFoundError as e:
        raise FileNotFoundError(f'{name!r}: {e}') from None
    if not osp.isfile(path):
        raise FileNotFoundError(f'{name!r}: no such config ({path})')
    return path


# --- pkg_resources-free package look-ups (MMEngine's contract) -------------

def _top_level_spec(name: str):
    """The spec of an importable top-level module ``name``, or None (never
    imports anything; a name that is not a module name gives None)."""
    if not name.isidentifier():
        return None
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


def is_installed(package: str) -> bool:
    """True if ``package`` is an installed distribution or an importable
    module with a file (MMEngine's ``is_installed``, without pkg_resources)."""
    from importlib import metadata
    try:
        metadata.distribution(package)
        return True
    except metadata.PackageNotFoundError:
        spec = _top_level_spec(package)
        return spec is not None and spec.origin is not None


def package2module(package: str) -> str:
    """The module an installed distribution provides, e.g. ``mmsegmentation``
    -> ``mmseg`` (its ``top_level.txt`` first line, as MMEngine reads it; else
    the one top-level package among its files)."""
    from importlib import metadata
    dist = metadata.distribution(package)  # PackageNotFoundError if absent
    top_level = (dist.read_text('top_level.txt') or '').split()
    if top_level:
        return top_level[0]
    tops = {f.parts[0] for f in dist.files or ()
            if len(f.parts) > 1 and f.name == '__init__.py'}
    if len(tops) == 1:
        return tops.pop()
    raise ValueError(f'can not infer the module name of {package}')


def get_installed_path(package: str) -> str:
    """The directory of the package ``package`` (a distribution or module
    name), e.g. ``mmsegmentation`` -> ``.../site-packages/mmseg``: where the
    distribution installed it (as MMEngine answers), else where Python
    imports it from (editable installs, a folder on ``PYTHONPATH``)."""
    from importlib import metadata
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        dist, module = None, package
    else:
        # MMEngine's order: a folder named as the distribution, else its
        # top-level module (mmsegmentation -> mmseg).
        inits = {f.parts[0]: f for f in dist.files or ()
                 if len(f.parts) == 2 and f.name == '__init__.py'}
        module = package if package in inits else package2module(package)
        if module in inits:
            return osp.dirname(str(dist.locate_file(inits[module])))
    spec = _top_level_spec(module)
    if spec is None:
        if dist is None:
            raise metadata.PackageNotFoundError(
                f'{package} is not installed (no distribution or module of '
                f'that name): pip install {package}')
        raise ModuleNotFoundError(
            f'{package} is installed but its module {module!r} is not '
            'importable from sys.path')
    if spec.origin is None:
        raise RuntimeError(f'{package} is a namespace package, which is '
                           'invalid for `get_install_path`')
    return osp.dirname(spec.origin)


def patch_package_utils(module=None) -> None:
    """Replace MMEngine's pkg_resources-based look-ups by the ones above, in
    ``mmengine.utils.package_utils`` and in the modules that imported them."""
    module = module or sys.modules[PACKAGE_UTILS]
    here = sys.modules[__name__]
    for name in _REPLACED:
        original = getattr(module, name, None)
        if original is None or original is getattr(here, name):
            continue
        setattr(module, name, getattr(here, name))
        for importer in map(sys.modules.get, _IMPORTERS):
            if importer is not None and \
                    getattr(importer, name, None) is original:
                setattr(importer, name, getattr(here, name))


# --- pvt_mm:: ---------------------------------------------------------------

def apply(config_cls=None) -> None:
    """Wrap ``Config._get_cfg_path`` once to resolve ``pvt_mm::`` paths."""
    if config_cls is None:
        from mmengine.config import Config as config_cls
    original = config_cls.__dict__['_get_cfg_path'].__func__
    if getattr(original, '_pvt_mm_shim', False):
        return

    def _get_cfg_path(cfg_path, filename):
        if cfg_path.startswith(PREFIX):
            path = osp.join(configs_dir(), cfg_path[len(PREFIX):])
            if not osp.isfile(path):
                raise FileNotFoundError(
                    f'{cfg_path!r}: no such config in pvt_mm ({path})')
            # No scope tag: our configs name pvt_mm types explicitly
            # ('pvt_mm.PVTv2') and inherit mmdet/mmseg/mmpretrain bases whose
            # types must resolve in those libraries' scopes.
            return path, None
        return original(cfg_path, filename)

    _get_cfg_path._pvt_mm_shim = True
    config_cls._get_cfg_path = staticmethod(_get_cfg_path)


def _patch(name: str, module) -> None:
    if name == PACKAGE_UTILS:
        patch_package_utils(module)
    else:
        apply(module.Config)


class _ApplyOnImport:
    """``sys.meta_path`` hook: patch ``mmengine.utils.package_utils`` and
    ``mmengine.config.config`` right after each is imported, without
    importing them early."""

    def __init__(self):
        self.pending = {PACKAGE_UTILS, CONFIG_MODULE}

    def find_spec(self, name, path=None, target=None):
        if name not in self.pending:
            return None
        self.pending.discard(name)
        if not self.pending:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            _patch(name, module)

        spec.loader.exec_module = exec_and_patch
        return spec


def install_import_hook() -> None:
    """Called from the ``.pth`` file at start-up and by ``import pvt_mm``;
    cheap (no imports). Does nothing with ``PVT_MM_CONFIG_HOOK=0``."""
    if not enabled():
        return
    if any(isinstance(f, _ApplyOnImport) for f in sys.meta_path):
        return
    finder = _ApplyOnImport()
    for name in (PACKAGE_UTILS, CONFIG_MODULE):
        if name in sys.modules:  # imported before the hook: patch now
            finder.pending.discard(name)
            _patch(name, sys.modules[name])
    if finder.pending:
        sys.meta_path.insert(0, finder)


def install_pth() -> str:
    """Write ``pvt_mm_config.pth`` into this interpreter's site-packages
    (wheels ship it; editable installs need this one-off step, which
    ``tools/setup_env.sh`` runs: ``python -m pvt_mm_config_hook``)."""
    import sysconfig
    path = osp.join(sysconfig.get_paths()['purelib'], PTH_NAME)
    with open(path, 'w') as f:
        f.write(PTH_LINE)
    return path


if __name__ == '__main__':
    print(f'installed {install_pth()}')
