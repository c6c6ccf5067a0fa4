"""Data for the training tools: checks of a config's dataset layout with
errors that say what is missing (:mod:`.layout`), moving ``data_root``,
and the generated demo data (:mod:`.demo_data`). No dataset classes:
pvt_mm uses MMDetection's, MMSegmentation's and MMPretrain's own."""
from .layout import (DatasetLayoutError, check_dataset_layout,
                     retarget_data_root)

__all__ = ['DatasetLayoutError', 'check_dataset_layout', 'retarget_data_root']
