"""The plugin contract: import isolation, registry scope, pkg:: configs."""
import os
import subprocess
import sys
import textwrap

import pytest

from helpers import REPO_ROOT


def _run(code, cwd=None):
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)],
                          capture_output=True, text=True, cwd=cwd or '/')


def test_import_does_not_pull_downstream_libraries():
    res = _run('''
        import sys, pvt_mm
        bad = [m for m in ('mmdet', 'mmseg', 'mmpretrain') if m in sys.modules]
        assert not bad, bad
        print(sorted(pvt_mm.MODELS.module_dict))
    ''')
    assert res.returncode == 0, res.stderr
    for name in ('PVTv1', 'PVTv2', 'CvT'):
        assert name in res.stdout


def test_class_names_do_not_collide_with_mmdet_builtins():
    import mmdet.models  # noqa: F401  registers mmdet's PVTs
    from mmdet.registry import MODELS as DET

    import pvt_mm
    assert DET.get('PyramidVisionTransformerV2') is not pvt_mm.PVTv2
    assert DET.get('pvt_mm.PVTv2') is pvt_mm.PVTv2


def test_buildable_through_downstream_registries_in_one_process():
    """A downstream config names ``pvt_mm.<Name>`` after custom_imports; the
    three libraries and HF's reference models coexist in one process
    (transformers >= 4.53 breaks mmpretrain and with it mmdet.models)."""
    res = _run('''
        import importlib, torch
        from mmengine.config import Config
        from mmengine.utils import import_modules_from_strings
        from mmcv.ops import nms, RoIAlign
        from transformers import CvtModel, PvtModel, PvtV2Model
        cfg = Config(dict(custom_imports=dict(imports=['pvt_mm'],
                                              allow_failed_imports=False)))
        import_modules_from_strings(**cfg.custom_imports)
        for lib in ('mmdet', 'mmseg', 'mmpretrain'):
            importlib.import_module(f'{lib}.models')
            importlib.import_module(f'{lib}.utils').register_all_modules()
            MODELS = importlib.import_module(f'{lib}.registry').MODELS
            m = MODELS.build(dict(type='pvt_mm.PVTv2', arch='b0'))
            outs = m(torch.zeros(1, 3, 64, 64))
            print(lib, type(m).__module__, [tuple(o.shape) for o in outs][-1])
    ''')
    assert res.returncode == 0, res.stderr
    lines = res.stdout.split('\n')
    for lib in ('mmdet', 'mmseg', 'mmpretrain'):
        assert f'{lib} pvt_mm.models.pvt_v2 (1, 256, 2, 2)' in lines, res.stdout


def test_pkg_base_config_from_outside_the_repo(tmp_path):
    """A user project inherits our configs with ``pvt_mm::``."""
    cfg_file = tmp_path / 'my_project' / 'my_model.py'
    cfg_file.parent.mkdir()
    cfg_file.write_text(textwrap.dedent('''
        _base_ = 'pvt_mm::_base_/models/pvt_v2_b0.py'
        backbone = dict(frozen_stages=1)
    '''))
    res = _run(f'''
        from mmengine.config import Config
        cfg = Config.fromfile({str(cfg_file)!r})
        print(cfg.backbone.type, cfg.backbone.arch, cfg.backbone.frozen_stages)
    ''', cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ['pvt_mm.PVTv2', 'b0', '1']


@pytest.mark.parametrize('off', [False, True], ids=['default', 'switched_off'])
def test_process_wide_changes_have_off_switches(off):
    """docs/process_wide_changes.md: the config-path hook and the safe
    checkpoint loader are on by default and off with their variables."""
    env = dict(os.environ)
    if off:
        env.update(PVT_MM_CONFIG_HOOK='0', PVT_MM_SAFE_CHECKPOINTS='0')
    code = textwrap.dedent('''
        import pvt_mm, pvt_mm.engine
        from mmengine.config import Config
        from mmengine.runner import CheckpointLoader
        hook = getattr(Config.__dict__['_get_cfg_path'].__func__,
                       '_pvt_mm_shim', False)
        loader = CheckpointLoader._schemes['']
        print(hook, loader is pvt_mm.engine.load_from_local)
    ''')
    res = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, cwd='/', env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == (['False', 'False'] if off else
                                  ['True', 'True'])


# Setuptools >= 82 ships no pkg_resources; a fresh environment gets it (torch
# depends on setuptools). This finder makes the interpreter look like one.
NO_PKG_RESOURCES = '''
import sys
class _NoPkgResources:
    def find_spec(self, name, path=None, target=None):
        if name.partition('.')[0] == 'pkg_resources':
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _NoPkgResources())
'''


@pytest.mark.parametrize('hook', ['on', 'off'])
def test_pkg_bases_resolve_without_pkg_resources(tmp_path, hook):
    """``pvt_mm::``, ``mmdet::``, ``mmseg::`` and ``mmpretrain::`` bases
    resolve in an interpreter without pkg_resources, and nothing imports
    it; with the hook off (negative control) MMEngine 0.10 fails there."""
    bases = {'mmdet': 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
             'mmseg': 'mmseg::_base_/models/fpn_r50.py',
             'mmpretrain': 'mmpretrain::_base_/models/resnet18.py',
             'ours': 'pvt_mm::retinanet_pvt_v2_b0_coco.py'}
    for name, base in bases.items():
        # (not mmdet.py: the folder is on sys.path, and would shadow mmdet)
        (tmp_path / f'{name}_cfg.py').write_text(f'_base_ = {base!r}\n')
    env = dict(os.environ, PVT_MM_CONFIG_HOOK='1' if hook == 'on' else '0')
    code = NO_PKG_RESOURCES + textwrap.dedent(f'''
        from mmengine.config import Config
        for name in {list(bases)!r}:
            m = Config.fromfile(name + '_cfg.py').model
            print(name, m.type, m.backbone.type)
        print('pkg_resources' in sys.modules)
    ''')
    res = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, cwd=str(tmp_path), env=env)
    if hook == 'off':
        assert res.returncode != 0
        assert "No module named 'pkg_resources'" in res.stderr
        return
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        'mmdet RetinaNet ResNet', 'mmseg EncoderDecoder ResNetV1c',
        'mmpretrain ImageClassifier ResNet', 'ours RetinaNet pvt_mm.PVTv2',
        'False']


def test_package_lookups_answer_as_mmengines():
    """The hook's look-ups give MMEngine's pkg_resources-based answers where
    pkg_resources exists (this venv), for distribution and module names,
    and a clear error for a package that is not installed."""
    code = textwrap.dedent('''
        import json, warnings
        warnings.simplefilter('ignore')
        from mmengine.utils import package_utils as mm
        import pvt_mm_config_hook as ours
        out = []
        for pkg in ('mmdet', 'mmsegmentation', 'mmpretrain', 'mmcv',
                    'mmengine', 'torch', 'no_such_package_xyz'):
            row = [pkg]
            for impl in (mm, ours):
                row.append(impl.is_installed(pkg))
                try:
                    row.append(impl.get_installed_path(pkg))
                except Exception as e:
                    row.append(type(e).__name__ + ': ' + str(e))
                try:
                    row.append(impl.package2module(pkg))
                except Exception as e:
                    row.append(type(e).__name__)
            out.append(row)
        print(json.dumps(out))
    ''')
    env = dict(os.environ, PVT_MM_CONFIG_HOOK='0')  # MMEngine's own intact
    res = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, cwd='/', env=env)
    assert res.returncode == 0, res.stderr
    import json
    rows = json.loads(res.stdout.splitlines()[-1])
    for pkg, *answers in rows[:-1]:
        assert answers[:3] == answers[3:], (pkg, answers)
    assert rows[1][2].endswith('/mmseg') and rows[1][3] == 'mmseg'
    pkg, mm_inst, mm_path, _, inst, path, _ = rows[-1]
    assert (mm_inst, inst) == (False, False)
    assert path.startswith('PackageNotFoundError') and \
        'pip install no_such_package_xyz' in path


def test_editable_install_resolves_to_the_checkout():
    """MMEngine's resolver joins the distribution's location with the
    package name, which for an editable install is not where the code is;
    the hook's answers the directory Python imports it from."""
    import pvt_mm
    import pvt_mm_config_hook as hook
    assert hook.get_installed_path('pvt_mm') == os.path.dirname(
        pvt_mm.__file__)
    assert hook.package2module('pvt_mm') == 'pvt_mm'


def test_hook_rebinds_lookups_imported_before_it():
    """A process that imported mmengine before pvt_mm (no .pth file, e.g.
    a checkout on PYTHONPATH) gets the look-ups rebound where MMEngine bound
    them by name."""
    code = textwrap.dedent('''
        import mmengine.config.config as cc, mmengine.utils as mu
        import mmengine.utils.package_utils as pu
        before = cc.get_installed_path
        import pvt_mm, pvt_mm_config_hook as hook
        for mod in (cc, mu, pu):
            assert mod.get_installed_path is hook.get_installed_path, mod
            assert mod.is_installed is hook.is_installed, mod
        assert before is not hook.get_installed_path
        print('ok')
    ''')
    env = dict(os.environ, PVT_MM_CONFIG_HOOK='1')
    # -S: no site-packages .pth, so the hook is applied by `import pvt_mm`
    # only; site-packages then comes back through PYTHONPATH.
    import site
    env['PYTHONPATH'] = os.pathsep.join([REPO_ROOT, *site.getsitepackages()])
    res = subprocess.run([sys.executable, '-S', '-c', code],
                         capture_output=True, text=True, cwd='/', env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == 'ok'


def test_one_resolver_for_package_configs():
    """``pvt_mm_config_hook.configs_dir``: the one place
    ``<package>/.mim/configs`` is computed (the hook, ``config_path``,
    pvt_mm.swap and the compatibility matrix use it), with a clear error for
    a package that is not installed; one loader for config files and
    ``pkg::`` names."""
    import pvt_mm_config_hook as hook
    from pvt_mm.swap import config_path
    assert os.path.isfile(os.path.join(hook.configs_dir(),
                                       'retinanet_pvt_v2_b2_coco.py'))
    mmdet_dir = hook.configs_dir('mmdet')
    assert os.path.isdir(os.path.join(mmdet_dir, 'retinanet'))
    assert config_path('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py') == \
        os.path.join(mmdet_dir, 'retinanet', 'retinanet_r50_fpn_1x_coco.py')
    with pytest.raises(FileNotFoundError, match="'no_such_pkg' is not inst"):
        hook.configs_dir('no_such_pkg')
    with pytest.raises(FileNotFoundError, match="no_such_pkg::a.py.*not inst"):
        config_path('no_such_pkg::a.py')
    assert config_path is hook.config_path
    # One config loader: the tools' load_config takes pkg:: names too
    # (pvt_mm.swap's old load_config is the same function).
    import pvt_mm.swap
    from pvt_mm.engine.runner import load_config
    assert pvt_mm.swap.load_config is load_config
    cfg = load_config('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py')
    assert cfg.model.type == 'RetinaNet'
    with pytest.raises(FileNotFoundError, match='no such config'):
        load_config('mmdet::retinanet/no_such.py')
    with pytest.raises(AttributeError, match='no_such_name'):
        pvt_mm.swap.no_such_name


def test_renamed_modules_keep_their_old_import_paths():
    """pvt_mm.cli (no CLI in it) is pvt_mm.engine.runner + pvt_mm.analysis,
    pvt_mm.datasets (no datasets) is pvt_mm.data: the old paths give the
    same objects, so code written against them still runs; the benchmark
    harness left the package (benchmarks/harness)."""
    import pvt_mm.analysis
    import pvt_mm.cli
    import pvt_mm.cli.analysis
    import pvt_mm.cli.runner
    import pvt_mm.data
    import pvt_mm.data.demo_data
    import pvt_mm.datasets
    import pvt_mm.datasets.demo_data
    import pvt_mm.datasets.layout
    import pvt_mm.engine.runner as runner
    for name in runner.__all__:
        assert getattr(pvt_mm.cli, name) is getattr(runner, name), name
        assert getattr(pvt_mm.cli.runner, name) is getattr(runner, name)
    for name in pvt_mm.analysis.__all__:
        assert getattr(pvt_mm.cli.analysis, name) is \
            getattr(pvt_mm.analysis, name), name
    for name in pvt_mm.data.__all__:
        assert getattr(pvt_mm.datasets, name) is getattr(pvt_mm.data, name)
        if hasattr(pvt_mm.data.layout, name):
            assert getattr(pvt_mm.datasets.layout, name) is \
                getattr(pvt_mm.data.layout, name)
    assert pvt_mm.datasets.demo_data.make_demo_data is \
        pvt_mm.data.demo_data.make_demo_data
    assert not hasattr(pvt_mm.cli.analysis, 'run_worker')
    import importlib.util
    assert importlib.util.find_spec('harness') is not None  # conftest's path
    assert not importlib.util.find_spec('harness').origin.startswith(
        os.path.dirname(pvt_mm.__file__))
