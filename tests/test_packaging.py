"""pvt_mm installed the way a user installs it (docs/get_started.md, "Your
own environment"): the sdist, the wheel built from it and what they carry;
and the documented install into a fresh environment with the pinned
stack and current setuptools (no ``pkg_resources``), used from a project
folder outside the checkout: ``import pvt_mm`` pulls in no mmdet / mmseg,
``pvt_mm::`` / ``mmdet::`` / ``mmseg::`` bases resolve, and MMDetection's own
``tools/train.py`` trains a ``pvt_mm::`` config for two iterations.

All in the default suite (about a minute: uv links the pinned stack from its
cache; mmcv is the wheel tools/setup_env.sh built), since this is the path
that breaks in users' environments and nowhere else."""
import glob
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile

import pytest

import pvt_mm_config_hook as hook
from helpers import REPO_ROOT, load_tool

GET_STARTED = osp.join(REPO_ROOT, 'docs', 'get_started.md')
#: The comment that marks the tested install block in docs/get_started.md.
MARK = '<!-- tests/test_packaging.py runs this block -->'
EXTRAS = ('det', 'seg', 'cls', 'deploy')


def documented_install() -> str:
    """The bash block under :data:`MARK` in docs/get_started.md."""
    text = open(GET_STARTED).read()
    assert MARK in text, f'{GET_STARTED} lost its tested install block'
    block = re.match(r'\s*```bash\n(.*?)```', text.split(MARK, 1)[1], re.S)
    assert block, f'no ```bash block right after {MARK!r}'
    return block.group(1)


def uv() -> str:
    """The uv binary: on PATH, or where ``python3 -m pip install uv`` (what
    tools/setup_env.sh runs when uv is missing) put it."""
    exe = shutil.which('uv')
    if exe is None:
        res = subprocess.run(
            ['python3', '-c', 'import uv; print(uv.find_uv_bin())'],
            capture_output=True, text=True)
        exe = res.stdout.strip() if res.returncode == 0 else None
    assert exe, ('uv is neither on PATH nor importable by python3 '
                 '(tools/setup_env.sh installs it: python3 -m pip install uv)')
    return exe


def mmcv_wheel() -> str:
    """The mmcv 2.1.0 wheel with ops that tools/setup_env.sh built and
    installed here (its cache key is recorded in the venv; CPU ops: torch and
    Python), or PVT_MM_WHEEL_CACHE's."""
    import torch
    recorded = osp.join(sys.prefix, '.pvt_mm_mmcv_key')
    key = (open(recorded).read().strip() if osp.isfile(recorded) else
           load_tool('mmcv_build_plan').cpu_key(torch.__version__,
                                                sys.version_info))
    cache = os.environ.get('PVT_MM_WHEEL_CACHE') or osp.join(
        os.environ.get('XDG_CACHE_HOME') or osp.expanduser('~/.cache'),
        'pvt_mm', 'wheels', key)
    found = sorted(glob.glob(osp.join(cache, 'mmcv-2.1.0-*.whl')))
    assert found, (f'no mmcv 2.1.0 wheel in {cache}: run tools/setup_env.sh '
                   '(it builds and caches one)')
    return found[-1]


def run(cmd, cwd, env=None, timeout=900) -> str:
    res = subprocess.run(cmd, cwd=str(cwd), env=env, capture_output=True,
                         text=True, timeout=timeout)
    out = res.stdout + res.stderr
    assert res.returncode == 0, f'{cmd}\nexit {res.returncode}\n{out[-6000:]}'
    return out


@pytest.fixture(scope='module')
def archives(tmp_path_factory):
    """(sdist, wheel) as the documented ``uv build`` makes them: the sdist
    from the checkout, the wheel from the sdist."""
    dist = tmp_path_factory.mktemp('dist')
    run([uv(), 'build', '--quiet', '--out-dir', str(dist), REPO_ROOT],
        cwd=dist)
    sdists = glob.glob(str(dist / 'pvt_mm-*.tar.gz'))
    wheels = glob.glob(str(dist / 'pvt_mm-*.whl'))
    assert len(sdists) == 1 and len(wheels) == 1, os.listdir(dist)
    return sdists[0], wheels[0]


def test_wheel_carries_configs_docs_and_the_start_up_hook(archives):
    _, wheel = archives
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        pth = z.read('pvt_mm_config.pth').decode()
        metadata = z.read(next(n for n in names
                               if n.endswith('.dist-info/METADATA'))).decode()
        sources = {n: z.read(n).decode() for n in names if n.endswith('.py')}
    assert pth == hook.PTH_LINE
    assert 'pvt_mm_config_hook.py' in names
    configs = glob.glob(osp.join(REPO_ROOT, 'configs', '**', '*.py'),
                        recursive=True)
    assert len(configs) > 80
    missing = [c for c in configs if 'pvt_mm/.mim/configs/' + osp.relpath(
        c, osp.join(REPO_ROOT, 'configs')) not in names]
    assert not missing, f'configs not in the wheel: {missing[:5]}'
    index = ['model-index.yml'] + [
        'configs/' + osp.relpath(p, osp.join(REPO_ROOT, 'configs'))
        for p in glob.glob(osp.join(REPO_ROOT, 'configs', '*', 'metafile.yml'))
        + glob.glob(osp.join(REPO_ROOT, 'configs', '*', 'README.md'))]
    assert len(index) == 7
    absent = [f for f in index if f'pvt_mm/.mim/{f}' not in names]
    assert not absent, f'model index files not in the wheel: {absent}'
    # Every docs/X.md that the wheel's code and README (METADATA) name.
    named = set()
    for text in [metadata, *sources.values()]:
        named.update(re.findall(r'docs/(\w+\.md)', text))
    assert {'process_wide_changes.md', 'deployment.md',
            'use_in_your_project.md'} <= named
    absent = sorted(d for d in named if f'pvt_mm/.mim/docs/{d}' not in names)
    assert not absent, f'docs named in the wheel but not in it: {absent}'
    extras = set(re.findall(r'^Provides-Extra: (\S+)$', metadata, re.M))
    assert set(EXTRAS) <= extras, extras
    assert not [n for n in names if n.startswith(('tests/', 'benchmarks/'))]


def test_sdist_builds_the_same_wheel(archives):
    """The sdist holds what setup.py reads (README, requirements) and the
    package data behind the checkout's links."""
    sdist, wheel = archives
    with tarfile.open(sdist) as t:
        root = t.getnames()[0].split('/')[0]
        names = {n[len(root) + 1:] for n in t.getnames()}
    for f in ('setup.py', 'pyproject.toml', 'README.md', 'MANIFEST.in',
              'pvt_mm_config_hook.py', 'requirements/tests.txt',
              'pvt_mm/.mim/configs/retinanet_pvt_v2_b2_coco.py',
              'pvt_mm/.mim/configs/pvt_v2/metafile.yml',
              'pvt_mm/.mim/model-index.yml',
              'pvt_mm/.mim/docs/get_started.md'):
        assert f in names, f
    with zipfile.ZipFile(wheel) as z:
        in_wheel = {n for n in z.namelist() if n.startswith('pvt_mm/')}
    assert in_wheel <= names | {n + 'c' for n in names}


def test_extras_match_the_docs():
    """docs/get_started.md names each extra and what it brings."""
    text = open(GET_STARTED).read()
    for extra in EXTRAS:
        assert f'`{extra}` (' in text, extra
    assert '[det,seg]' in documented_install()


# --- the documented install, in a fresh environment ------------------------

USER_CONFIGS = {
    # a user's project inheriting ours (whose bases inherit mmdet::)
    'det.py': "_base_ = 'pvt_mm::retinanet_pvt_v2_b2_coco.py'\n"
              "model = dict(bbox_head=dict(num_classes=3))\n",
    'seg.py': "_base_ = 'pvt_mm::sem_fpn_pvt_v2_b2_ade20k_40k.py'\n",
    # and MMDetection's / MMSegmentation's own
    'mmdet_base.py': "_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco"
                     ".py'\n",
    'mmseg_base.py': "_base_ = 'mmseg::_base_/models/fpn_r50.py'\n",
}

CHECK = textwrap.dedent('''
    import json, sys, warnings
    warnings.filterwarnings('error', message='.*pkg_resources')
    import pvt_mm
    out = dict(pvt_mm=pvt_mm.__file__,
               downstream=[m for m in ('mmdet', 'mmseg', 'mmpretrain')
                           if m in sys.modules])
    from mmengine.config import Config
    for name in ('det', 'seg', 'mmdet_base', 'mmseg_base'):
        cfg = Config.fromfile(name + '.py')
        out[name] = [cfg.model.type, cfg.model.backbone.type]
    out['det_classes'] = Config.fromfile('det.py').model.bbox_head.num_classes
    out['pkg_resources'] = 'pkg_resources' in sys.modules
    print(json.dumps(out))
''')


def test_documented_install_in_a_fresh_environment(tmp_path):
    env_dir, dist = tmp_path / 'env', tmp_path / 'dist'
    # Nothing may point uv at this checkout's .venv; the new environment's
    # Python is the one .venv was made from (the cached mmcv wheel's).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith('UV_') and k not in (
               'VIRTUAL_ENV', 'CONDA_PREFIX', 'PYTHONPATH', 'PYTHONHOME')}
    base_bin = osp.dirname(osp.realpath(sys._base_executable))
    uv_bin = osp.dirname(uv())
    env.update(SRC=REPO_ROOT, DIST=str(dist), ENV=str(env_dir),
               MMCV_WHEEL=mmcv_wheel(),
               PATH=f'{base_bin}:{uv_bin}:{env["PATH"]}',
               PVT_MM_TEST_THREADS='1', OMP_NUM_THREADS='1')
    run(['bash', '-euo', 'pipefail', '-c', documented_install()],
        cwd=tmp_path, env=env, timeout=1500)
    py = str(env_dir / 'bin' / 'python')
    env = dict(env, PATH=f'{env_dir}/bin:' + env['PATH'],
               VIRTUAL_ENV=str(env_dir))

    # Current setuptools: no pkg_resources (the premise of the test).
    res = subprocess.run([py, '-c', 'import pkg_resources'], env=env,
                         capture_output=True, text=True)
    assert res.returncode != 0 and 'pkg_resources' in res.stderr, (
        'the fresh environment still has pkg_resources: the test would not '
        'show that pkg:: bases resolve without it')

    project = tmp_path / 'my_project'  # a user's folder, not the checkout
    project.mkdir()
    for name, text in USER_CONFIGS.items():
        (project / name).write_text(text)
    out = json.loads(run([py, '-c', CHECK], cwd=project,
                         env=env).strip().splitlines()[-1])
    assert out['pvt_mm'].startswith(str(env_dir)), out['pvt_mm']
    assert out['downstream'] == []
    assert out['det'] == ['RetinaNet', 'pvt_mm.PVTv2']
    assert out['det_classes'] == 3
    assert out['seg'] == ['EncoderDecoder', 'pvt_mm.PVTv2']
    assert out['mmdet_base'] == ['RetinaNet', 'ResNet']
    assert out['mmseg_base'] == ['EncoderDecoder', 'ResNetV1c']
    assert out['pkg_resources'] is False

    # The model index ships in the package (mim reads it; paper_table and
    # pvt_mm.paper_results read it through pvt_mm.model_index).
    from pvt_mm.paper_results import PAPER_RESULTS
    count = run([py, '-c', 'from pvt_mm.paper_results import PAPER_RESULTS; '
                 'print(len(PAPER_RESULTS))'], cwd=project, env=env)
    assert int(count.strip().splitlines()[-1]) == len(PAPER_RESULTS) > 60

    # MMDetection's own tools/train.py (in its wheel), on generated data:
    # 16 images at batch 8, one epoch = two iterations.
    run([py, '-c', 'from pvt_mm.data.demo_data import make_demo_data; '
         'make_demo_data("data/demo", num_train=16, num_val=8)'],
        cwd=project, env=env)
    (project / 'demo.py').write_text(
        "_base_ = 'pvt_mm::demo/retinanet_pvt_v2_b0_demo.py'\n"
        'train_cfg = dict(max_epochs=1, val_interval=1)\n'
        'default_hooks = dict(logger=dict(interval=1))\n'
        # keep every box of a 2-iteration model, so that COCO mAP is computed
        'model = dict(test_cfg=dict(score_thr=0.0))\n')
    mmdet_dir = subprocess.run(
        [py, '-c', 'import mmdet, os; print(os.path.dirname(mmdet.__file__))'],
        env=env, capture_output=True, text=True, check=True).stdout.strip()
    train = osp.join(mmdet_dir, '.mim', 'tools', 'train.py')
    log = run([py, train, 'demo.py', '--work-dir', 'wd'], cwd=project,
              env=env)
    assert 'pkg_resources' not in log
    iters = re.findall(r'Epoch\(train\)\s+\[1\]\[\s*(\d+)/2\].*?loss: ([\d.]+)',
                       log)
    assert [i for i, _ in iters] == ['1', '2'], log[-3000:]
    assert all(0 < float(v) < 1e3 for _, v in iters)
    assert osp.isfile(project / 'wd' / 'epoch_1.pth')
    assert 'bbox_mAP' in log
