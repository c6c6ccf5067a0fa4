import os

import pytest
import torch

# CI machines have 2 cores; PVT_MM_TEST_THREADS=1 helps on a loaded machine.
torch.set_num_threads(int(os.environ.get('PVT_MM_TEST_THREADS',
                                         max(1, min(2, os.cpu_count() or 1)))))
os.environ.setdefault('PYTHONHASHSEED', '0')

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def load_tool(name: str):
    """The module of ``tools/<name>.py`` (e.g. ``'analysis_tools/get_flops'``),
    loaded from its file: the tools are scripts, not a package."""
    import importlib.util
    path = os.path.join(REPO_ROOT, 'tools', f'{name}.py')
    spec = importlib.util.spec_from_file_location(
        'tool_' + name.replace('/', '_'), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
