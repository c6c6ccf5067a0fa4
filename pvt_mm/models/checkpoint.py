"""Moved to :mod:`pvt_mm.weights` (reading files safely, layouts, strict
loading); this module keeps the names existing imports use."""
from pvt_mm.weights import (TRUST_PICKLE_HINT, CheckpointError,  # noqa: F401
                            StateDict, convert_state_dict, detect_format,
                            find_state_dict, load_file, load_pretrained,
                            unwrap)
