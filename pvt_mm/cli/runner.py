"""Old import path of :mod:`pvt_mm.engine.runner` (the same objects)."""
from ..engine.runner import *  # noqa: F401,F403
from ..engine.runner import __all__  # noqa: F401
