"""The old name of :mod:`pvt_mm.data` (it holds no dataset classes);
``pvt_mm.datasets``, ``.layout`` and ``.demo_data`` give the same
objects."""
from ..data import *  # noqa: F401,F403
from ..data import __all__  # noqa: F401
