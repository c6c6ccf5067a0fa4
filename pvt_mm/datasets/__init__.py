"""Dataset helpers for the training tools (no dataset classes: pvt_mm uses
MMDetection's, MMSegmentation's and MMPretrain's own)."""
from .layout import (DatasetLayoutError, check_dataset_layout,
                     retarget_data_root)

__all__ = ['DatasetLayoutError', 'check_dataset_layout', 'retarget_data_root']
