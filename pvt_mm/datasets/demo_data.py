"""Old import path of :mod:`pvt_mm.data.demo_data` (the same objects)."""
from ..data.demo_data import *  # noqa: F401,F403
from ..data.demo_data import (CLASSES, SPLITS, demo_data_ready,  # noqa
                              make_demo_data)
