"""The plugin contract: import isolation, registry scope, pkg:: configs."""
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO_ROOT


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
