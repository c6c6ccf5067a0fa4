"""Which mmcv 2.1.0 wheel this machine needs, for ``tools/setup_env.sh``.

mmcv 2.1.0 with compiled ops exists only as a source release, so the setup
builds it once per machine into a wheel cache. This script decides how:

- no NVIDIA GPU (or ``PVT_MM_CPU_ONLY=1``): CPU ops, cache key
  ``torch<version>-py<XY>`` (what the setup always did);
- a GPU, an ``nvcc`` whose CUDA major version is torch's, and a torch built
  with CUDA: CUDA ops for the present GPUs' architectures
  (``FORCE_CUDA=1``, ``TORCH_CUDA_ARCH_LIST`` from ``nvidia-smi
  --query-gpu=compute_cap``, else ``torch.cuda.get_device_capability``),
  cache key ``torch<version>-py<XY>-cuda<nvcc release>-sm<archs>``;
- a GPU but no usable ``nvcc`` (missing, or another CUDA major than
  torch's), or a CPU-only torch: exit status 2 and one line on stderr that
  says what is missing and the fix (the CUDA toolkit matching torch's CUDA,
  or ``PVT_MM_CPU_ONLY=1`` to build the CPU wheel knowingly).

``nvcc`` is looked up the way ``torch.utils.cpp_extension`` (which compiles
mmcv) finds CUDA: ``$CUDA_HOME`` / ``$CUDA_PATH``, else the ``nvcc`` on
``PATH``, else ``/usr/local/cuda``.

Output (stdout), for ``eval`` in bash::

    MMCV_PLAN=cuda
    MMCV_KEY=torch2.13.0+cu130-py311-cuda13.0-sm90
    MMCV_BUILD_ENV=(MMCV_WITH_OPS=1 FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 ...)
    MMCV_PLAN_NOTE='...'

Usage: ``python tools/mmcv_build_plan.py`` (the torch to build against must
be importable). ``plan()`` is the decision alone, for tests.
"""
import os
import os.path as osp
import re
import shlex
import shutil
import subprocess
import sys
from typing import List, NamedTuple, Optional, Sequence

DEFAULT_CUDA_HOME = '/usr/local/cuda'
CPU_ONLY_ENV = 'PVT_MM_CPU_ONLY'


class PlanError(Exception):
    """The machine has a GPU but mmcv's CUDA ops cannot be built here."""


class Plan(NamedTuple):
    kind: str  # 'cpu' or 'cuda'
    key: str  # wheel cache key
    env: List[str]  # NAME=value for the build
    note: str = ''  # what setup_env.sh tells the user, if anything


def cpu_key(torch_version: str, python: Sequence[int]) -> str:
    return f'torch{torch_version}-py{python[0]}{python[1]}'


def _major(version: str) -> str:
    return version.split('.')[0]


def plan(*, gpu_caps: Sequence[str], torch_version: str,
         torch_cuda: Optional[str], python: Sequence[int] = sys.version_info,
         cuda_home: Optional[str] = None, nvcc_release: Optional[str] = None,
         nvcc_archs: Optional[Sequence[str]] = None,
         cpu_only: bool = False) -> Plan:
    """The build for a machine described by its inputs.

    Args:
        gpu_caps: compute capabilities of the GPUs, e.g. ``['9.0']``; empty
            without a GPU.
        torch_version, torch_cuda: ``torch.__version__`` and
            ``torch.version.cuda`` (None for a CPU-only torch).
        python: ``(major, minor)`` of the interpreter.
        cuda_home: the CUDA toolkit root that holds ``bin/nvcc``, or None.
        nvcc_release: ``nvcc --version``'s release, e.g. ``'13.0'``.
        nvcc_archs: ``nvcc --list-gpu-arch`` (``compute_90``, ...), or None
            when that listing is not available (then not checked).
        cpu_only: ``PVT_MM_CPU_ONLY=1``.
    """
    key = cpu_key(torch_version, python)
    caps = sorted(set(gpu_caps), key=lambda c: tuple(map(int, c.split('.'))))
    if not caps:
        return Plan('cpu', key, ['MMCV_WITH_OPS=1'])
    gpus = f'NVIDIA GPU (compute capability {", ".join(caps)})'
    if cpu_only:
        # Hide the GPU from mmcv's setup.py, which builds CUDA ops whenever
        # torch sees one.
        return Plan('cpu', key, ['MMCV_WITH_OPS=1', 'FORCE_CUDA=0',
                                 'CUDA_VISIBLE_DEVICES='],
                    f'{CPU_ONLY_ENV}=1: building mmcv with CPU ops only '
                    f'although an {gpus} is present (mmcv.ops on CUDA '
                    'tensors will fail)')
    fix_cpu = (f'or set {CPU_ONLY_ENV}=1 to build the CPU-only mmcv '
               'knowingly (its ops then fail on CUDA tensors)')
    if not torch_cuda:
        raise PlanError(
            f'an {gpus} is present but torch {torch_version} is a CPU-only '
            'build, so mmcv\'s CUDA ops cannot be built. Fix: install a '
            f'CUDA build of torch (requirements/torch.txt), {fix_cpu}')
    toolkit = (f'install the CUDA {_major(torch_cuda)}.x toolkit (torch '
               f'{torch_version} was built with CUDA {torch_cuda}) and put '
               'its bin/ on PATH or set CUDA_HOME to it')
    if not cuda_home or not nvcc_release:
        where = (f'CUDA_HOME={cuda_home} has no working bin/nvcc' if cuda_home
                 else 'no nvcc on PATH, in $CUDA_HOME or in '
                 f'{DEFAULT_CUDA_HOME}')
        raise PlanError(
            f'an {gpus} is present but nvcc, the CUDA compiler that builds '
            f'mmcv\'s CUDA ops, is missing ({where}). Fix: {toolkit}, '
            f'{fix_cpu}')
    if _major(nvcc_release) != _major(torch_cuda):
        raise PlanError(
            f'an {gpus} is present but nvcc ({cuda_home}/bin/nvcc) is CUDA '
            f'{nvcc_release} while torch {torch_version} was built with CUDA '
            f'{torch_cuda}; their major versions must match to build mmcv\'s '
            f'CUDA ops. Fix: {toolkit}, {fix_cpu}')
    unknown = [c for c in caps if nvcc_archs is not None and
               f'compute_{c.replace(".", "")}' not in nvcc_archs]
    if unknown:
        raise PlanError(
            f'an {gpus} is present but nvcc {nvcc_release} cannot compile '
            f'for compute capability {", ".join(unknown)}. Fix: install a '
            f'newer CUDA {_major(torch_cuda)}.x toolkit, {fix_cpu}')
    archs = ';'.join(caps)
    sm = '_'.join(c.replace('.', '') for c in caps)
    return Plan('cuda', f'{key}-cuda{nvcc_release}-sm{sm}',
                ['MMCV_WITH_OPS=1', 'FORCE_CUDA=1',
                 f'TORCH_CUDA_ARCH_LIST={archs}', f'CUDA_HOME={cuda_home}'],
                f'building mmcv with CUDA ops for compute capability {archs} '
                f'(nvcc {nvcc_release}, CUDA_HOME={cuda_home})')


# ---------------------------------------------------------------- probing


def _run(cmd: List[str]) -> Optional[str]:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout if res.returncode == 0 else None


def nvidia_smi_caps() -> Optional[List[str]]:
    """Compute capabilities from ``nvidia-smi``; None when it is missing,
    fails (no driver) or is too old to know ``compute_cap``."""
    exe = shutil.which('nvidia-smi')
    out = exe and _run([exe, '--query-gpu=compute_cap',
                        '--format=csv,noheader'])
    if not out:
        return None
    caps = [m.group(1) for m in (re.fullmatch(r'\s*(\d+\.\d+)\s*', line)
                                 for line in out.splitlines()) if m]
    return caps or None


def torch_caps(torch) -> List[str]:
    if not torch.cuda.is_available():
        return []
    return sorted({'%d.%d' % torch.cuda.get_device_capability(i)
                   for i in range(torch.cuda.device_count())})


def find_cuda_home() -> Optional[str]:
    """The CUDA root ``torch.utils.cpp_extension`` will compile with."""
    home = os.environ.get('CUDA_HOME') or os.environ.get('CUDA_PATH')
    if home:
        return home
    nvcc = shutil.which('nvcc')
    if nvcc:
        return osp.dirname(osp.dirname(nvcc))
    return DEFAULT_CUDA_HOME if osp.isdir(DEFAULT_CUDA_HOME) else None


def nvcc_release(cuda_home: str) -> Optional[str]:
    out = _run([osp.join(cuda_home, 'bin', 'nvcc'), '--version'])
    m = out and re.search(r'release (\d+\.\d+)', out)
    return m.group(1) if m else None


def nvcc_archs(cuda_home: str) -> Optional[List[str]]:
    out = _run([osp.join(cuda_home, 'bin', 'nvcc'), '--list-gpu-arch'])
    return out.split() if out else None


def probe() -> Plan:
    """The plan for this machine (raises PlanError)."""
    import torch
    caps = nvidia_smi_caps()
    if caps is None:
        caps = torch_caps(torch)
    cpu_only = os.environ.get(CPU_ONLY_ENV, '0') not in ('', '0')
    home = release = archs = None
    if caps and not cpu_only:
        home = find_cuda_home()
        release = home and nvcc_release(home)
        archs = release and nvcc_archs(home)
    return plan(gpu_caps=caps, torch_version=torch.__version__,
                torch_cuda=torch.version.cuda, python=sys.version_info,
                cuda_home=home, nvcc_release=release, nvcc_archs=archs,
                cpu_only=cpu_only)


def shell(p: Plan) -> str:
    return '\n'.join([
        f'MMCV_PLAN={p.kind}', f'MMCV_KEY={shlex.quote(p.key)}',
        'MMCV_BUILD_ENV=(' + ' '.join(map(shlex.quote, p.env)) + ')',
        f'MMCV_PLAN_NOTE={shlex.quote(p.note)}'])


def main() -> int:
    try:
        p = probe()
    except PlanError as e:
        print(e, file=sys.stderr)
        return 2
    print(shell(p))
    return 0


if __name__ == '__main__':
    sys.exit(main())
