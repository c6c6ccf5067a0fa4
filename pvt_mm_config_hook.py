"""Let MMEngine resolve ``pvt_mm::path/to/config.py`` base configs.

MMEngine 0.10 resolves ``pkg::`` only for a hard-coded list of OpenMMLab
packages and looks for ``<site-packages>/<pkg>/.mim/configs``, which does not
exist for editable installs. This shim teaches ``Config`` one more package:
``pvt_mm::X`` -> ``<pvt_mm package dir>/.mim/configs/X`` (a link to the
repo's ``configs/`` in a checkout, a copy in a wheel).

It is a top-level module so that importing it costs nothing. ``import pvt_mm``
applies it, and, so that configs parse before anything
imports pvt_mm (e.g. MMDetection's own ``tools/train.py``), at interpreter
start-up by the ``pvt_mm_config.pth`` file that ``setup.py`` installs, which
defers it until ``mmengine.config`` is imported.
"""
import importlib.util
import os
import os.path as osp
import sys

PREFIX = 'pvt_mm::'
#: ``PVT_MM_CONFIG_HOOK=0`` leaves MMEngine's ``Config`` untouched (then
#: ``pvt_mm::`` base paths do not resolve). docs/process_wide_changes.md.
OFF_SWITCH = 'PVT_MM_CONFIG_HOOK'


def enabled() -> bool:
    return os.environ.get(OFF_SWITCH, '1').strip().lower() not in (
        '0', 'false', 'no', 'off')


def configs_dir() -> str:
    spec = importlib.util.find_spec('pvt_mm')
    return osp.join(osp.dirname(spec.origin), '.mim', 'configs')


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


class _ApplyOnImport:
    """``sys.meta_path`` hook: apply the shim right after
    ``mmengine.config.config`` is imported, without importing it early."""

    def find_spec(self, name, path=None, target=None):
        if name != 'mmengine.config.config':
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            apply(module.Config)

        spec.loader.exec_module = exec_and_patch
        return spec


def install_import_hook() -> None:
    """Called from the ``.pth`` file at start-up and by ``import pvt_mm``;
    cheap (no imports). Does nothing with ``PVT_MM_CONFIG_HOOK=0``."""
    if not enabled():
        return
    if 'mmengine.config.config' in sys.modules:
        apply(sys.modules['mmengine.config.config'].Config)
    elif not any(isinstance(f, _ApplyOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _ApplyOnImport())


def install_pth() -> str:
    """Write ``pvt_mm_config.pth`` into this interpreter's site-packages
    (wheels ship it; editable installs need this one-off step, which
    ``tools/setup_env.sh`` runs: ``python -m pvt_mm_config_hook``)."""
    import sysconfig
    path = osp.join(sysconfig.get_paths()['purelib'], 'pvt_mm_config.pth')
    with open(path, 'w') as f:
        f.write('import pvt_mm_config_hook; '
                'pvt_mm_config_hook.install_import_hook()\n')
    return path


if __name__ == '__main__':
    print(f'installed {install_pth()}')
