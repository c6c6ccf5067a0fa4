"""Data for the training tools: checks of a config's dataset layout with
errors that say what is missing (:mod:`.layout`), of its contents against
the config (:mod:`.contents`: classes, num_classes, filtering, missing
images, label values), moving ``data_root``,
and the generated demo data (:mod:`.demo_data`). No dataset classes:
pvt_mm uses MMDetection's, MMSegmentation's and MMPretrain's own."""
from .contents import DatasetContentError, check_dataset_contents
from .layout import (DatasetLayoutError, check_dataset_layout,
                     retarget_data_root)

__all__ = ['DatasetContentError', 'DatasetLayoutError',
           'check_dataset_contents', 'check_dataset_layout',
           'retarget_data_root']
