"""Fixtures shared by the tests (their helpers: helpers.py)."""
import os
import sys

import pytest
import torch

# The measurement harness (benchmarks/harness) is not installed with
# pvt_mm; the benchmark scripts import it as `harness`, and so do tests.
sys.path.append(os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'benchmarks'))

# CI machines have 2 cores; PVT_MM_TEST_THREADS=1 helps on a loaded machine.
torch.set_num_threads(int(os.environ.get('PVT_MM_TEST_THREADS',
                                         max(1, min(2, os.cpu_count() or 1)))))
os.environ.setdefault('PYTHONHASHSEED', '0')


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """One torch thread for the test (tiny models: no OpenMP overhead, no
    contention on a busy machine, bit-identical reruns)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fresh_inductor_cache(tmp_path, monkeypatch):
    """An empty inductor cache for the test. Inductor's cache key does not
    see ATEN_CPU_CAPABILITY, so kernels cached by a run at another
    instruction-set level (make test-portability, docs/testing.md) would be
    reused and crash; a test that compiles with inductor starts empty."""
    monkeypatch.setenv('TORCHINDUCTOR_CACHE_DIR', str(tmp_path / 'inductor'))


@pytest.fixture(scope='module')
def fast_config_parsing():
    """MMEngine re-reads every metafile.yml of a package for each ``mmdet::``
    base (~0.3 s each); the files do not change during the tests. Modules
    that parse many configs use it (``pytestmark``)."""
    import functools

    import mmengine.config.utils as utils
    original = utils.load
    utils.load = functools.lru_cache(maxsize=None)(original)
    yield
    utils.load = original
