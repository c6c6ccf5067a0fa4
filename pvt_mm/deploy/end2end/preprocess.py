"""The data preprocessor's work, inside the graph: channel order, dtype,
normalisation and padding to the size divisor."""
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


class Preprocess(nn.Module):
    """``(B, 3, H, W)`` image (uint8 or float, channels as loaded) ->
    the normalised batch, padded at the bottom / right to a multiple of
    ``size_divisor`` with ``pad_value`` (after normalisation, as mmdet's
    ``DetDataPreprocessor`` and mmseg's ``SegDataPreProcessor`` pad)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float],
                 bgr_to_rgb: bool, size_divisor: int = 1,
                 pad_value: float = 0.):
        super().__init__()
        self.register_buffer('mean', torch.tensor(mean).view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer('std', torch.tensor(std).view(1, -1, 1, 1),
                             persistent=False)
        self.bgr_to_rgb = bgr_to_rgb
        self.size_divisor = int(size_divisor or 1)
        self.pad_value = float(pad_value)

    @classmethod
    def from_model(cls, model: nn.Module) -> 'Preprocess':
        """From ``model.data_preprocessor`` (mmdet's or mmseg's), for test
        mode; :class:`ExportError` for settings the graph does not repeat."""
        from ..onnx_export import ExportError
        pre = model.data_preprocessor
        test_cfg = dict(getattr(pre, 'test_cfg', None) or {})
        if test_cfg.get('size') is not None:  # mmseg
            raise ExportError(
                f'data_preprocessor.test_cfg.size={test_cfg["size"]} pads '
                f'every test image to a fixed size, which the end-to-end '
                f'graph does not repeat; use test_cfg=dict(size_divisor=...) '
                f'or export with --no-end2end')
        if not getattr(pre, '_enable_normalize', True):
            raise ExportError(
                'a model without normalisation in its data preprocessor '
                '(mean / std None) has no end-to-end export; export it with '
                '--no-end2end')
        divisor = getattr(pre, 'pad_size_divisor', None)  # mmdet
        if divisor is None:  # mmseg: test_cfg=dict(size_divisor=...)
            divisor = test_cfg.get('size_divisor') or 1
        pad_value = getattr(pre, 'pad_value', getattr(pre, 'pad_val', 0))
        # mmdet's DetDataPreprocessor calls it _channel_conversion, mmseg's
        # SegDataPreProcessor channel_conversion
        order = getattr(pre, '_channel_conversion',
                        getattr(pre, 'channel_conversion', False))
        return cls(pre.mean.flatten().tolist(), pre.std.flatten().tolist(),
                   bool(order), divisor, pad_value)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image
        if self.bgr_to_rgb:
            x = x.flip(1)
        x = (x.float() - self.mean) / self.std
        d = self.size_divisor
        if d > 1:
            h, w = x.shape[-2:]
            # sizes stay graph values while tracing (dynamic H / W)
            pad_h = (d - h % d) % d
            pad_w = (d - w % d) % d
            x = F.pad(x, (0, pad_w, 0, pad_h), value=self.pad_value)
        return x
