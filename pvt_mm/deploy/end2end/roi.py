"""RoI stages of two-stage detectors as standard ONNX subgraphs.

* :func:`roi_align`: mmcv's ``RoIAlign`` (``avg``; ``aligned=True`` or
  ``False``; fixed or adaptive sampling) in PyTorch, ONNX's ``RoiAlign``
  (opset 16: ``coordinate_transformation_mode='half_pixel'`` for
  ``aligned=True``, ``'output_half_pixel'`` for ``False``) in the graph.
  Both sample the same points: the box starts at ``x1 * scale - 0.5``
  (aligned) and is ``(x2 - x1) * scale`` wide (at least 1 unless aligned),
  each of the ``out`` bins takes ``sampling_ratio`` or, for 0,
  ``ceil(roi_side / out)`` samples per side, bilinear with the same
  border rules (a sample further than one pixel outside the map is 0, one
  within is clamped to the edge), averaged.
* :class:`MultiLevelRoIAlign`: mmdet's ``SingleRoIExtractor`` (each RoI
  pooled from the level of its ``sqrt(area)``, ``finest_scale`` 56 for
  level 0), with ``NonZero`` / ``Gather`` / ``ScatterND`` to pool each RoI
  at its own level only.
* :func:`paste_masks`: mmdet's ``_do_paste_mask`` on the CPU (each mask
  bilinearly resampled onto the pixel centres of the original image inside
  its box grown by a pixel, zero outside) as two small matrix products.
"""
from typing import Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor

#: ONNX opset from which ``RoiAlign`` has ``coordinate_transformation_mode``
ROI_ALIGN_OPSET = 16


class _RoIAlign(torch.autograd.Function):
    """mmcv's RoIAlign in PyTorch, ONNX ``RoiAlign`` when exported."""

    @staticmethod
    def forward(ctx, feat: Tensor, rois: Tensor, batch_idx: Tensor,
                out_h: int, out_w: int, spatial_scale: float,
                sampling_ratio: int, aligned: bool) -> Tensor:
        from mmcv.ops import roi_align as mmcv_roi_align
        rois5 = torch.cat([batch_idx.to(rois.dtype)[:, None], rois], 1)
        return mmcv_roi_align(feat, rois5.contiguous(), (out_h, out_w),
                              spatial_scale, sampling_ratio, 'avg', aligned)

    @staticmethod
    def symbolic(g, feat, rois, batch_idx, out_h, out_w, spatial_scale,
                 sampling_ratio, aligned):
        opset = getattr(g, 'opset', ROI_ALIGN_OPSET)
        if opset < ROI_ALIGN_OPSET:
            from ..onnx_export import ExportError
            raise ExportError(
                f'RoIAlign needs ONNX opset >= {ROI_ALIGN_OPSET} (its '
                f'half-pixel coordinates); the export asked for {opset}')
        mode = 'half_pixel' if aligned else 'output_half_pixel'
        return g.op('RoiAlign', feat, rois, batch_idx,
                    coordinate_transformation_mode_s=mode, mode_s='avg',
                    output_height_i=int(out_h), output_width_i=int(out_w),
                    sampling_ratio_i=max(0, int(sampling_ratio)),
                    spatial_scale_f=float(spatial_scale))


def roi_align(feat: Tensor, rois: Tensor, batch_idx: Tensor,
              output_size: Union[int, Sequence[int]], spatial_scale: float,
              sampling_ratio: int = 0, aligned: bool = True) -> Tensor:
    """``(B, C, H, W)`` map, ``(N, 4)`` boxes ``x1, y1, x2, y2`` in input
    pixels and ``(N,)`` int64 image indices -> ``(N, C, out_h, out_w)``
    (see the module docstring)."""
    out_h, out_w = ((output_size, output_size)
                    if isinstance(output_size, int) else output_size)
    return _RoIAlign.apply(feat, rois, batch_idx.long(), int(out_h),
                           int(out_w), float(spatial_scale),
                           int(sampling_ratio), bool(aligned))


def roi_levels(rois: Tensor, finest_scale: float, num_levels: int) -> Tensor:
    """mmdet's ``SingleRoIExtractor.map_roi_levels``:
    ``clamp(floor(log2(sqrt(area) / finest_scale + 1e-6)), 0, L - 1)``,
    computed as the number of thresholds ``2 ** k`` (k = 1 .. L-1) the
    argument reaches (``log2`` has no ONNX operator, and ``Log / ln 2``
    rounds across a power of two where ``log2`` does not)."""
    scale = torch.sqrt((rois[:, 2] - rois[:, 0]) * (rois[:, 3] - rois[:, 1]))
    s = scale / finest_scale + 1e-6
    level = torch.zeros_like(s, dtype=torch.long)
    for k in range(1, num_levels):
        level = level + (s >= float(2 ** k)).long()
    return level


class MultiLevelRoIAlign(nn.Module):
    """mmdet's ``SingleRoIExtractor`` with mmcv ``RoIAlign`` layers:
    ``forward(feats, rois (N, 4), batch_idx (N,)) -> (N, C, h, w)``."""

    def __init__(self, extractor: nn.Module):
        super().__init__()
        from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor

        from ..onnx_export import ExportError
        if type(extractor) is not SingleRoIExtractor:
            raise ExportError(
                f'{type(extractor).__name__}: the end-to-end graph has '
                f'mmdet\'s SingleRoIExtractor only')
        layers = list(extractor.roi_layers)
        for layer in layers:
            if (type(layer).__name__ != 'RoIAlign'
                    or getattr(layer, 'pool_mode', 'avg') != 'avg'):
                raise ExportError(
                    f'{layer!r}: the end-to-end graph has mmcv RoIAlign '
                    f'(avg) only')
        size = layers[0].output_size
        self.output_size: Tuple[int, int] = (
            (size, size) if isinstance(size, int) else tuple(size))
        self.spatial_scales = [float(layer.spatial_scale) for layer in layers]
        self.sampling_ratios = [int(layer.sampling_ratio) for layer in layers]
        self.aligned = [bool(layer.aligned) for layer in layers]
        self.finest_scale = float(extractor.finest_scale)
        self.out_channels = int(extractor.out_channels)

    @property
    def num_inputs(self) -> int:
        return len(self.spatial_scales)

    def pool(self, level: int, feat: Tensor, rois: Tensor,
             batch_idx: Tensor) -> Tensor:
        return roi_align(feat, rois, batch_idx, self.output_size,
                         self.spatial_scales[level],
                         self.sampling_ratios[level], self.aligned[level])

    def forward(self, feats: Sequence[Tensor], rois: Tensor,
                batch_idx: Tensor) -> Tensor:
        feats = feats[:self.num_inputs]
        n = len(feats)
        if n == 1:
            return self.pool(0, feats[0], rois, batch_idx)
        level = roi_levels(rois, self.finest_scale, n)
        out = rois.new_zeros((rois.shape[0], feats[0].shape[1],
                              *self.output_size))
        for i in range(n):
            inds = (level == i).nonzero()[:, 0]
            pooled = self.pool(i, feats[i], rois[inds], batch_idx[inds])
            out = out.index_put((inds, ), pooled)
        return out


def _paste_weights(lo: Tensor, hi: Tensor, size: Tensor, cells: int
                   ) -> Tensor:
    """Bilinear weights ``(N, size, cells)`` that resample a mask side of
    ``cells`` values spread over ``[lo, hi]`` (``(N, 1)``) at the pixel
    centres ``0.5 .. size - 0.5``, as ``grid_sample`` (zero padding,
    ``align_corners=False``) on mmdet's grid, restricted to the pixels
    ``[floor(lo) - 1, ceil(hi) + 1)`` that mmdet pastes on the CPU."""
    pix = torch.arange(size, device=lo.device).to(lo.dtype)[None]  # (1, S)
    g = (pix + 0.5 - lo) / (hi - lo) * 2 - 1
    g = torch.where(torch.isinf(g), torch.zeros_like(g), g)
    coord = ((g + 1) * cells - 1) / 2  # grid_sample's unnormalisation
    cell = torch.arange(cells, device=lo.device).to(lo.dtype)
    w = torch.relu(1 - (coord[..., None] - cell).abs())  # (N, S, cells)
    first = torch.clamp(torch.floor(lo) - 1, min=0)
    last = torch.minimum(torch.ceil(hi) + 1, size.to(lo.dtype))
    inside = (pix >= first) & (pix < last)
    return w * inside[..., None].to(w.dtype)


def paste_masks(masks: Tensor, boxes: Tensor, img_h: Tensor,
                img_w: Tensor) -> Tensor:
    """``(N, h, w)`` mask probabilities and their ``(N, 4)`` boxes in the
    pixels of an ``img_h x img_w`` image (0-d int64 tensors: graph values
    while tracing) -> ``(N, img_h, img_w)`` probabilities, what mmdet's
    ``_do_paste_mask`` gives on the CPU (``skip_empty``) with zeros
    outside its region. The bilinear interpolation of ``grid_sample`` is
    separable on this axis-aligned grid, so it is ``Wy @ mask @ Wx^T``."""
    x0, y0, x1, y1 = boxes.split(1, dim=1)
    wy = _paste_weights(y0, y1, img_h, masks.shape[-2])
    wx = _paste_weights(x0, x1, img_w, masks.shape[-1])
    return wy @ masks.to(wy.dtype) @ wx.transpose(1, 2)


__all__ = ['ROI_ALIGN_OPSET', 'roi_align', 'roi_levels',
           'MultiLevelRoIAlign', 'paste_masks']
