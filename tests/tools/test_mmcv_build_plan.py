"""tools/mmcv_build_plan.py: which mmcv wheel ``make setup`` builds, decided
from ``nvidia-smi``, ``nvcc`` and torch's CUDA, here faked by shell scripts
on PATH (nothing is compiled)."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from helpers import REPO_ROOT, load_tool

PLAN = load_tool('mmcv_build_plan')
SCRIPT = os.path.join(REPO_ROOT, 'tools', 'mmcv_build_plan.py')
CPU_KEY = (f'torch{torch.__version__}-'
           f'py{sys.version_info[0]}{sys.version_info[1]}')


def fake(bin_dir, name, body):
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text('#!/bin/sh\n' + textwrap.dedent(body))
    path.chmod(0o755)


def fake_gpu(bin_dir, *caps):
    lines = '\n'.join(caps)
    fake(bin_dir, 'nvidia-smi', f'''\
        case "$*" in
          *compute_cap*) printf '{lines}\\n' ;;
          *) echo "NVIDIA-SMI 580.00"; exit 0 ;;
        esac
        ''')


def fake_nvcc(cuda_home, release,
              archs=('compute_80', 'compute_86', 'compute_90')):
    fake(cuda_home / 'bin', 'nvcc', f'''\
        case "$1" in
          --version) echo "nvcc: NVIDIA (R) Cuda compiler driver"
                     echo "Cuda compilation tools, release {release}, \
        V{release}.1" ;;
          --list-gpu-arch) printf '%s\\n' {' '.join(archs)} ;;
          *) exit 1 ;;
        esac
        ''')


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A machine whose PATH holds only the fakes in ``tmp_path/bin`` (and
    ``sh``), no CUDA_HOME, no /usr/local/cuda, torch built with CUDA 13.0
    and seeing no GPU itself."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    monkeypatch.setenv('PATH', f'{bin_dir}:/bin:/usr/bin')
    for var in ('CUDA_HOME', 'CUDA_PATH', PLAN.CPU_ONLY_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(PLAN, 'DEFAULT_CUDA_HOME', str(tmp_path / 'no-cuda'))
    monkeypatch.setattr(torch.version, 'cuda', '13.0')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    return bin_dir


def test_no_gpu_builds_the_cpu_wheel_under_the_old_key(machine, tmp_path):
    fake_nvcc(tmp_path / 'cuda', '13.0')  # a toolkit alone changes nothing
    machine.joinpath('nvcc').symlink_to(tmp_path / 'cuda' / 'bin' / 'nvcc')
    p = PLAN.probe()
    assert p == PLAN.Plan('cpu', CPU_KEY, ['MMCV_WITH_OPS=1'], '')


def test_failing_nvidia_smi_means_no_gpu(machine):
    fake(machine, 'nvidia-smi', 'echo "NVIDIA-SMI has failed because it '
         'couldn\'t communicate with the NVIDIA driver"; exit 9\n')
    assert PLAN.probe().kind == 'cpu'


def test_gpu_with_matching_nvcc_builds_cuda_ops_for_its_arch(
        machine, tmp_path, monkeypatch):
    fake_gpu(machine, '9.0')
    fake_nvcc(tmp_path / 'cuda-13.0', '13.0')
    monkeypatch.setenv('CUDA_HOME', str(tmp_path / 'cuda-13.0'))
    p = PLAN.probe()
    assert p.kind == 'cuda'
    assert p.key == f'{CPU_KEY}-cuda13.0-sm90'
    assert p.env == ['MMCV_WITH_OPS=1', 'FORCE_CUDA=1',
                     'TORCH_CUDA_ARCH_LIST=9.0',
                     f'CUDA_HOME={tmp_path}/cuda-13.0']
    assert 'compute capability 9.0' in p.note


def test_nvcc_found_on_path_and_several_gpus(machine, tmp_path):
    fake_gpu(machine, '9.0', '8.0', '9.0')
    fake_nvcc(tmp_path / 'cuda', '13.2')
    machine.joinpath('nvcc').symlink_to(tmp_path / 'cuda' / 'bin' / 'nvcc')
    p = PLAN.probe()
    # CUDA_HOME is PATH's nvcc's parent, as torch.utils.cpp_extension has it
    assert p.env[-2:] == ['TORCH_CUDA_ARCH_LIST=8.0;9.0',
                          f'CUDA_HOME={tmp_path}']
    assert p.key == f'{CPU_KEY}-cuda13.2-sm80_90'


def test_gpu_seen_by_torch_when_nvidia_smi_cannot_tell(machine, tmp_path,
                                                       monkeypatch):
    fake_nvcc(tmp_path / 'cuda', '13.0')
    monkeypatch.setenv('CUDA_HOME', str(tmp_path / 'cuda'))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 1)
    monkeypatch.setattr(torch.cuda, 'get_device_capability',
                        lambda i: (8, 6))
    p = PLAN.probe()
    assert (p.kind, p.key) == ('cuda', f'{CPU_KEY}-cuda13.0-sm86')


def test_gpu_without_nvcc_is_an_error_naming_the_fix(machine):
    fake_gpu(machine, '9.0')
    with pytest.raises(PLAN.PlanError) as e:
        PLAN.probe()
    msg = str(e.value)
    assert 'compute capability 9.0' in msg and 'nvcc' in msg
    assert 'missing' in msg and 'no nvcc on PATH' in msg
    assert 'install the CUDA 13.x toolkit' in msg
    assert 'PVT_MM_CPU_ONLY=1' in msg


def test_cuda_home_without_nvcc_is_an_error(machine, tmp_path, monkeypatch):
    fake_gpu(machine, '9.0')
    monkeypatch.setenv('CUDA_HOME', str(tmp_path / 'empty'))
    with pytest.raises(PLAN.PlanError, match='has no working bin/nvcc'):
        PLAN.probe()


def test_nvcc_of_another_cuda_major_is_an_error(machine, tmp_path,
                                                monkeypatch):
    fake_gpu(machine, '9.0')
    fake_nvcc(tmp_path / 'cuda-12.4', '12.4')
    monkeypatch.setenv('CUDA_HOME', str(tmp_path / 'cuda-12.4'))
    with pytest.raises(PLAN.PlanError) as e:
        PLAN.probe()
    msg = str(e.value)
    assert 'CUDA 12.4' in msg and 'built with CUDA 13.0' in msg
    assert 'major versions must match' in msg
    assert 'install the CUDA 13.x toolkit' in msg
    assert 'PVT_MM_CPU_ONLY=1' in msg


def test_nvcc_that_does_not_know_the_arch_is_an_error(machine, tmp_path,
                                                      monkeypatch):
    fake_gpu(machine, '12.0')
    fake_nvcc(tmp_path / 'cuda', '13.0', archs=('compute_90',))
    monkeypatch.setenv('CUDA_HOME', str(tmp_path / 'cuda'))
    with pytest.raises(PLAN.PlanError, match='cannot compile for compute '
                       'capability 12.0'):
        PLAN.probe()


def test_cpu_only_build_on_a_gpu_machine_is_explicit(machine, monkeypatch):
    fake_gpu(machine, '9.0')  # and no nvcc: no error when asked for CPU
    monkeypatch.setenv('PVT_MM_CPU_ONLY', '1')
    p = PLAN.probe()
    assert (p.kind, p.key) == ('cpu', CPU_KEY)
    assert 'CUDA_VISIBLE_DEVICES=' in p.env  # mmcv's setup.py must not see it
    assert 'PVT_MM_CPU_ONLY=1' in p.note


def test_cpu_only_torch_on_a_gpu_machine_is_an_error():
    with pytest.raises(PLAN.PlanError, match='CPU-only build'):
        PLAN.plan(gpu_caps=['9.0'], torch_version='2.13.0+cpu',
                  torch_cuda=None, python=(3, 11))


def run_script(env, shell=''):
    """The script as setup_env.sh runs it: stdout is ``eval``-ed by bash."""
    code = f'out=$("{sys.executable}" "{SCRIPT}") || exit $?; eval "$out"; '
    code += shell
    return subprocess.run(['bash', '-c', code], capture_output=True,
                          text=True, env=env)


def test_script_output_is_read_by_bash(tmp_path):
    bin_dir = tmp_path / 'bin'
    fake_gpu(bin_dir, '9.0')
    cuda = torch.version.cuda or '13.0'
    fake_nvcc(tmp_path / 'cuda', cuda)
    env = dict(os.environ, PATH=f'{bin_dir}:/bin:/usr/bin',
               CUDA_HOME=str(tmp_path / 'cuda'))
    env.pop(PLAN.CPU_ONLY_ENV, None)
    res = run_script(env, 'echo "$MMCV_PLAN|$MMCV_KEY|${MMCV_BUILD_ENV[*]}"')
    if torch.version.cuda is None:  # a CPU-only torch: the error path
        assert res.returncode == 2 and 'CPU-only build' in res.stderr
        return
    assert res.returncode == 0, res.stderr
    cuda_key = f'{CPU_KEY}-cuda{cuda}-sm90'
    assert res.stdout.strip() == (
        f'cuda|{cuda_key}|MMCV_WITH_OPS=1 FORCE_CUDA=1 '
        f'TORCH_CUDA_ARCH_LIST=9.0 CUDA_HOME={tmp_path}/cuda')

    # no nvcc: exit status 2, the reason on stderr, nothing to eval
    env['CUDA_HOME'] = str(tmp_path / 'nowhere')
    res = run_script(env, 'echo unreachable')
    assert res.returncode == 2 and res.stdout == ''
    assert 'PVT_MM_CPU_ONLY=1' in res.stderr


# ------------------------------------------- tools/setup_env.sh, dry run


@pytest.fixture
def dry_setup(tmp_path):
    """tools/setup_env.sh in a copy of the repo's setup files, with a fake
    ``uv`` (installs nothing) and a ``.venv/bin/python`` that runs this
    interpreter except for ``pip wheel`` (writes an empty mmcv wheel) and
    the config-hook install; both log what they were asked."""
    import shutil
    root = tmp_path / 'repo'
    (root / 'tools').mkdir(parents=True)
    for name in ('setup_env.sh', 'mmcv_build_plan.py'):
        shutil.copy(os.path.join(REPO_ROOT, 'tools', name), root / 'tools')
    shutil.copytree(os.path.join(REPO_ROOT, 'requirements'),
                    root / 'requirements')
    shutil.copy(os.path.join(REPO_ROOT, 'setup.py'), root)
    log = tmp_path / 'log'
    fake(root / '.venv' / 'bin', 'python', f'''\
        if [ "$1 $2 $3" = "-m pip wheel" ]; then
          echo "pip wheel FORCE_CUDA=${{FORCE_CUDA-}} \\
        TORCH_CUDA_ARCH_LIST=${{TORCH_CUDA_ARCH_LIST-}} \\
        CUDA_HOME=${{CUDA_HOME-}} MMCV_WITH_OPS=${{MMCV_WITH_OPS-}}" >> {log}
          while [ $# -gt 0 ]; do
            if [ "$1" = -w ]; then
              touch "$2/mmcv-2.1.0-cp311-cp311-linux_x86_64.whl"; fi
            shift
          done
          exit 0
        fi
        if [ "$1 $2" = "-m pvt_mm_config_hook" ]; then exit 0; fi
        exec {sys.executable} "$@"
        ''')
    bin_dir = tmp_path / 'bin'
    fake(bin_dir, 'uv', f'echo "uv $*" >> {log}\n')
    env = {k: v for k, v in os.environ.items()
           if k not in ('CUDA_HOME', 'CUDA_PATH', PLAN.CPU_ONLY_ENV)}
    env.update(PATH=f'{bin_dir}:/usr/bin:/bin',
               PVT_MM_WHEEL_CACHE=str(tmp_path / 'wheels'))

    def run(**extra):
        res = subprocess.run(['bash', str(root / 'tools' / 'setup_env.sh')],
                             capture_output=True, text=True,
                             env=dict(env, **extra))
        return res, log.read_text() if log.exists() else ''
    run.bin_dir, run.root = bin_dir, root
    return run


def test_setup_on_a_gpu_machine_without_nvcc_stops_naming_the_fix(
        dry_setup, tmp_path):
    fake_gpu(dry_setup.bin_dir, '9.0')
    # (CUDA_HOME: this machine may have a toolkit in /usr/local/cuda)
    res, log = dry_setup(CUDA_HOME=str(tmp_path / 'no-toolkit'))
    assert res.returncode == 1, res.stdout + res.stderr
    err = res.stderr.strip().splitlines()[-1]
    assert err.startswith('setup_env: FAILED: an NVIDIA GPU (compute '
                          'capability 9.0) is present but nvcc')
    assert 'install the CUDA' in err
    assert 'PVT_MM_CPU_ONLY=1' in err
    assert 'pip wheel' not in log and 'mminstall' not in log


@pytest.mark.skipif(torch.version.cuda is None, reason='a CPU-only torch')
def test_setup_on_a_gpu_machine_builds_mmcv_with_cuda_ops(dry_setup,
                                                          tmp_path):
    fake_gpu(dry_setup.bin_dir, '9.0')
    fake_nvcc(tmp_path / 'cuda', torch.version.cuda)
    res, log = dry_setup(CUDA_HOME=str(tmp_path / 'cuda'))
    key = f'{CPU_KEY}-cuda{torch.version.cuda}-sm90'
    assert 'pip wheel' in log, res.stdout + res.stderr
    assert (f'pip wheel FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 '
            f'CUDA_HOME={tmp_path}/cuda MMCV_WITH_OPS=1') in log
    assert f'{tmp_path}/wheels/mmcv-2.1.0-' in log  # the installed wheel
    assert (dry_setup.root / '.venv' / '.pvt_mm_mmcv_key').read_text() \
        == key + '\n'
    # The empty wheel installed nothing, so the CPU-only mmcv of this
    # machine is what the final check sees; it says so.
    assert res.returncode == 1
    assert 'has no CUDA ops: mmcv was built without them' in res.stderr
