"""Semantic FPN (mmseg ``EncoderDecoder``, ``test_cfg.mode='whole'``) end to
end: ``image`` + ``ori_shape`` in, ``label_map`` out, as
``model.predict(..., rescale)`` gives it.

The steps are mmseg's, in its order:

1. the data preprocessor in test mode (``SegDataPreProcessor``): BGR -> RGB,
   normalisation, padding at the bottom / right to
   ``data_preprocessor.test_cfg.size_divisor`` (:class:`.Preprocess`);
2. backbone + neck + decode head: logits at 1/4 of the padded input;
3. ``decode_head.predict_by_feat``: bilinear resize to the padded input
   (``pad_shape``), with the head's ``align_corners``;
4. ``postprocess_result``: crop the padding (the image's own ``H, W``),
   bilinear resize to ``ori_shape`` (the segmentor's ``align_corners``,
   which is the decode head's), argmax over classes (or, for a
   one-channel head, ``sigmoid > threshold``).

Every size is a graph value (the input's shape, ``ori_shape``'s entries),
so one file runs at any image size; mmseg's ``Upsample`` (the FPN head's
scale heads) is made size-generic while tracing by
:func:`pvt_mm.deploy.onnx_export.traceable_upsampling`, which the exporter
applies. ONNX operators: ``Resize`` (linear, ``half_pixel`` /
``align_corners``), ``Slice``, ``ArgMax`` besides the network's.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import SEG_OUTPUTS, register
from .preprocess import Preprocess


class SegmentorEnd2End(nn.Module):
    """``forward(image (B, 3, H, W), ori_shape (B, 2) int64) ->
    (label_map (B, h, w) int64,)`` for an mmseg ``EncoderDecoder``; ``h, w``
    = ``ori_shape[0]`` (one original size per batch, the contract)."""

    output_names = list(SEG_OUTPUTS)

    def __init__(self, model: nn.Module):
        super().__init__()
        from ..onnx_export import ExportError
        mode = (getattr(model, 'test_cfg', None) or {}).get('mode', 'whole')
        if mode != 'whole':
            raise ExportError(
                f"test_cfg.mode={mode!r}: the end-to-end segmentor graph runs "
                f"mode='whole' (the Semantic FPN configs'); export with "
                f"--no-end2end or set model.test_cfg.mode='whole'")
        self.model = model
        self.preprocess = Preprocess.from_model(model)
        head = model.decode_head
        self.head_align_corners = bool(head.align_corners)
        self.align_corners = bool(getattr(model, 'align_corners',
                                          head.align_corners))
        self.out_channels = int(getattr(head, 'out_channels',
                                        head.num_classes))
        self.threshold = float(getattr(head, 'threshold', None) or 0.3)

    def forward(self, image: torch.Tensor, ori_shape: torch.Tensor):
        h, w = image.shape[-2:]
        x = self.preprocess(image)
        m = self.model
        logits = m.decode_head(m.extract_feat(x))
        # predict_by_feat: to the padded input (pad_shape)
        logits = F.interpolate(logits, size=x.shape[-2:], mode='bilinear',
                               align_corners=self.head_align_corners)
        # postprocess_result: crop the padding, resize to the original size
        logits = logits[:, :, :h, :w]
        logits = F.interpolate(logits, size=(ori_shape[0, 0],
                                             ori_shape[0, 1]),
                               mode='bilinear',
                               align_corners=self.align_corners)
        if self.out_channels > 1:
            label_map = logits.argmax(dim=1)
        else:
            label_map = (logits.sigmoid() > self.threshold)[:, 0].long()
        return (label_map, )


@register('segmentor')
def build_segmentor(model: nn.Module) -> nn.Module:
    """The end-to-end module of an mmseg ``EncoderDecoder``."""
    return SegmentorEnd2End(model)


__all__ = ['SegmentorEnd2End', 'build_segmentor']
