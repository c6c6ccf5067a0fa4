"""Old import path of :mod:`pvt_mm.analysis` (the same objects)."""
from ..analysis import *  # noqa: F401,F403
from ..analysis import __all__  # noqa: F401
