"""Moved to :mod:`pvt_mm.weights.formats` (the checkpoint layouts of each
family); this module keeps the names existing imports use."""
from pvt_mm.weights.formats import *  # noqa: F401,F403
from pvt_mm.weights.formats import __all__  # noqa: F401
