"""The checks that turn bad input into one clear error: a checkpoint that
does not belong to the config, an image the model cannot take, an ONNX file
exported from another config."""
from typing import Optional, Sequence

import torch.nn as nn

from pvt_mm.weights import CheckpointError
# torch-free, shared with the runtime (which checks end-to-end files)
from pvt_mm.runtime.errors import ExportMismatchError  # noqa: F401
from pvt_mm.runtime.fingerprint import (NOT_IN_GRAPH,  # noqa: F401
                                        model_fingerprint)


class CheckpointMismatchError(CheckpointError):
    """A detector / segmentor checkpoint whose weights do not fit the model
    its config builds."""


class InputSizeError(ValueError):
    """An image (after the test pipeline and padding) that is smaller than
    the model's deepest stage can process."""


def check_state_dict(model: nn.Module, state_dict: dict, checkpoint: str,
                     config: str) -> None:
    """Raise :class:`CheckpointMismatchError` unless ``state_dict`` holds
    exactly the weights of ``model`` with the same shapes.

    MMEngine's ``load_checkpoint`` (and so MMDetection's / MMSegmentation's
    inferencers) only warns about missing or unexpected keys, and a model
    with half its weights random gives confident nonsense."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [f'{k}: checkpoint {tuple(v.shape)} vs model '
                  f'{tuple(own[k].shape)}' for k, v in state_dict.items()
                  if k in own and hasattr(v, 'shape')
                  and tuple(v.shape) != tuple(own[k].shape)]
    if not (missing or unexpected or mismatched):
        return
    lines = []
    if mismatched:
        lines.append(f'{len(mismatched)} shape mismatches: '
                     + '; '.join(mismatched[:5]))
    if missing:
        lines.append(f'{len(missing)} model weights missing from the '
                     f'checkpoint, e.g. ' + ', '.join(missing[:5]))
    if unexpected:
        lines.append(f'{len(unexpected)} checkpoint weights the model has no '
                     f'place for, e.g. ' + ', '.join(unexpected[:5]))
    raise CheckpointMismatchError(
        f'checkpoint {checkpoint} does not match config {config} (was it '
        f'trained with another config, backbone or number of classes?):\n  '
        + '\n  '.join(lines))


def check_input_size(shape: Sequence[int], min_size: int,
                     what: Optional[str] = None) -> None:
    """Raise :class:`InputSizeError` if the padded batch ``(..., H, W)`` is
    smaller than ``min_size`` on a side."""
    h, w = int(shape[-2]), int(shape[-1])
    if min(h, w) < min_size:
        raise InputSizeError(
            f'{what or "the model"} cannot take a {h}x{w} input: its deepest '
            f'stage needs at least {min_size}x{min_size} pixels after the '
            f'test pipeline; resize the image up (Resize in the pipeline) or '
            f'pad it (Pad / the data preprocessor\'s pad_size_divisor)')
