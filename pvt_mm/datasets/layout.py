"""Old import path of :mod:`pvt_mm.data.layout` (the same objects)."""
from ..data.layout import *  # noqa: F401,F403
from ..data.layout import (DatasetLayoutError, check_dataset_layout,  # noqa
                           retarget_data_root)
