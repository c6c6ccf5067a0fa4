"""Fixtures of the config tests (this folder)."""
import functools

import pytest


@pytest.fixture(scope='module', autouse=True)
def _fast_config_parsing():
    """MMEngine re-reads every metafile.yml of a package for each ``mmdet::``
    base (~0.3 s each); the files do not change during the tests."""
    import mmengine.config.utils as utils
    original = utils.load
    utils.load = functools.lru_cache(maxsize=None)(original)
    yield
    utils.load = original
