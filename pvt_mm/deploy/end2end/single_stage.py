"""End-to-end graphs of single-stage detectors (RetinaNet, ATSS, GFL):
image in, final detections out (the contract of :mod:`.`).

:class:`SingleStageEnd2End` repeats mmdet 3's test-time post-processing
of a dense head (``BaseDenseHead.predict_by_feat`` and
``_predict_by_feat_single``, ``GFLHead._predict_by_feat_single``,
``_bbox_post_process``) for a whole batch with fixed-size tensors:

1. the priors of each level from the head's ``AnchorGenerator`` for the
   feature sizes of this input (graph values when traced);
2. per level, mmdet's ``filter_scores_and_topk``: the (prior, class) pairs
   with score > ``score_thr``, at most ``nms_pre`` of them by score
   (``TopK`` over the level's scores, padded to ``nms_pre`` candidates,
   unused ones marked invalid); without ``nms_pre`` (mmdet's default -1)
   mmdet keeps ``scores[:-1]``, all but the lowest, and so does the graph
   (a full sort);
3. the boxes decoded from those priors (``DeltaXYWHBBoxCoder`` with its
   means / stds / ratio clip, or GFL's distribution integral times the
   stride and ``distance2bbox`` from the anchor centres), clipped to the
   resized image (``img_shape``) where the coder clips;
4. ``rescale``: boxes times ``1 / scale_factor`` with mmdet's
   ``scale_factor = (W / ori_w, H / ori_h)``, computed in float64 like
   mmdet's Python floats; then the score factors (ATSS's centerness) and
   ``min_bbox_size``;
5. class-aware NMS (:func:`.nms.batched_nms`, mmcv's offset trick) and the
   best ``max_per_img``.

Equal to ``model.predict(..., rescale=True)`` except where fp32 rounding
decides: scores tied at the ``nms_pre`` or ``max_per_img`` cut and NMS
ties (see :mod:`.nms`). Not repeated: mmcv's ``split_thr`` branch with
``class_agnostic=True`` NMS (mmcv then suppresses per class; here the NMS
stays class-agnostic), reachable only with 10000 candidates or more.
"""
from typing import List, Optional

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from . import DET_OUTPUTS, register
from .nms import SPLIT_THR, batched_nms, gather_rows, take_detections
from .preprocess import Preprocess


def _unsupported(model: nn.Module, why: str):
    from ..onnx_export import ExportError
    return ExportError(
        f'{type(model).__name__} with {type(model.bbox_head).__name__}: '
        f'{why}; the end-to-end export covers dense heads with mmdet\'s '
        f'default post-processing (RetinaNet, ATSS, GFL and their like). '
        f'Export it with --no-end2end (network in ONNX, post-processing in '
        f'PyTorch)')


class SingleStageEnd2End(nn.Module):
    """``forward(image, ori_shape) -> (dets, scores, labels, num_dets)`` of
    an mmdet single-stage detector (see the module docstring)."""

    output_names = DET_OUTPUTS

    def __init__(self, model: nn.Module):
        super().__init__()
        from mmdet.models.dense_heads import GFLHead
        from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
        from mmdet.models.task_modules.coders import (
            DeltaXYWHBBoxCoder, DistancePointBBoxCoder)
        from mmdet.models.task_modules.prior_generators import \
            AnchorGenerator
        self.detector = model
        self.preprocess = Preprocess.from_model(model)
        head = model.bbox_head
        self.head = head
        predict = type(head)._predict_by_feat_single
        self.gfl = predict is GFLHead._predict_by_feat_single
        if not (self.gfl or predict is BaseDenseHead._predict_by_feat_single):
            raise _unsupported(model, 'its head has its own post-processing')
        if type(head).predict_by_feat is not BaseDenseHead.predict_by_feat:
            raise _unsupported(model, 'its head has its own post-processing')
        if type(head.prior_generator) is not AnchorGenerator:
            raise _unsupported(model, f'{type(head.prior_generator).__name__}'
                               f' priors')
        coder = head.bbox_coder
        want = DistancePointBBoxCoder if self.gfl else DeltaXYWHBBoxCoder
        if type(coder) is not want:
            raise _unsupported(model, f'{type(coder).__name__} boxes')
        if getattr(head.loss_cls, 'custom_cls_channels', False):
            raise _unsupported(model, 'custom classification channels')
        self.sigmoid = bool(getattr(head, 'use_sigmoid_cls', True))
        if self.gfl and not self.sigmoid:
            raise _unsupported(model, 'softmax GFL scores')
        cfg = head.test_cfg
        nms = dict(cfg.get('nms') or {})
        if nms.get('type', 'nms') != 'nms':
            raise _unsupported(model, f'{nms.get("type")} (only plain nms)')
        self.iou_thr = float(nms['iou_threshold'])
        self.class_agnostic = bool(nms.get('class_agnostic', False))
        self.split_thr = int(nms.get('split_thr', SPLIT_THR))
        self.nms_pre = int(cfg.get('nms_pre', -1))
        self.score_thr = float(cfg.get('score_thr', 0))
        self.min_bbox_size = cfg.get('min_bbox_size', -1)
        self.max_per_img = int(cfg.max_per_img)
        self.num_classes = int(head.num_classes)
        self.strides = [s[0] for s in head.prior_generator.strides]

    # ------------------------------------------------------------ levels
    def _level_scores(self, cls_score: Tensor) -> Tensor:
        """``(B, A * C', H, W)`` logits -> ``(B, H * W * A * C)`` scores in
        mmdet's (position, anchor, class) order."""
        c = self.head.cls_out_channels
        b = cls_score.shape[0]
        logits = cls_score.permute(0, 2, 3, 1).reshape(b, -1, c)
        if self.sigmoid:
            scores = logits.sigmoid()
        else:  # background last (mmdet >= 2.0)
            scores = logits.softmax(-1)[..., :-1]
        return scores.reshape(b, -1)

    def _filter(self, scores: Tensor):
        """mmdet's ``filter_scores_and_topk``: ``(values, index, valid)``
        of the (prior, class) pairs with score > ``score_thr``, the best
        ``nms_pre`` of them."""
        low = torch.full_like(scores, -float('inf'))
        masked = torch.where(scores > self.score_thr, scores, low)
        if self.nms_pre <= 0:
            # mmdet keeps scores[:min(nms_pre, n)] of the n above the
            # threshold by descending score: with nms_pre < 0 all but the
            # |nms_pre| lowest (the default -1 drops one), with 0 none
            values, index = masked.sort(dim=1, descending=True)
            above = values > self.score_thr
            count = above.sum(1, keepdim=True)
            limit = (count + self.nms_pre if self.nms_pre < 0
                     else torch.zeros_like(count))
            rank = torch.zeros_like(index) + torch.arange(
                index.shape[1], device=index.device)
            valid = above & (rank < limit)
            index = torch.where(valid, index, torch.zeros_like(index))
            values = torch.where(valid, values, torch.zeros_like(values))
            return values, index, valid
        # nms_pre dummies: TopK's k never exceeds the entries
        masked = torch.cat(
            [masked, low[:, :1].expand(-1, self.nms_pre)], 1)
        values, index = masked.topk(self.nms_pre, dim=1)
        valid = values > self.score_thr
        index = torch.where(valid, index, torch.zeros_like(index))
        values = torch.where(valid, values, torch.zeros_like(values))
        return values, index, valid

    def _decode_deltas(self, priors: Tensor, deltas: Tensor) -> Tensor:
        """mmdet's ``delta2bbox`` (no clipping), same operations."""
        coder = self.head.bbox_coder
        means = deltas.new_tensor(coder.means).view(1, 1, -1)
        stds = deltas.new_tensor(coder.stds).view(1, 1, -1)
        denorm = deltas * stds + means
        dxy, dwh = denorm[..., :2], denorm[..., 2:]
        pxy = (priors[..., :2] + priors[..., 2:]) * 0.5
        pwh = priors[..., 2:] - priors[..., :2]
        dxy_wh = pwh * dxy
        max_ratio = float(np.abs(np.log(16 / 1000)))
        if coder.add_ctr_clamp:
            dxy_wh = torch.clamp(dxy_wh, max=coder.ctr_clamp,
                                 min=-coder.ctr_clamp)
            dwh = torch.clamp(dwh, max=max_ratio)
        else:
            dwh = dwh.clamp(min=-max_ratio, max=max_ratio)
        gxy = pxy + dxy_wh
        gwh = pwh * dwh.exp()
        return torch.cat([gxy - gwh * 0.5, gxy + gwh * 0.5], dim=-1)

    @staticmethod
    def _decode_distances(priors: Tensor, dist: Tensor) -> Tensor:
        """GFL: ``distance2bbox(anchor_center(priors), dist)`` (no
        clipping)."""
        cx = (priors[..., 2] + priors[..., 0]) / 2
        cy = (priors[..., 3] + priors[..., 1]) / 2
        return torch.stack([cx - dist[..., 0], cy - dist[..., 1],
                            cx + dist[..., 2], cy + dist[..., 3]], -1)

    def _level(self, level: int, cls_score: Tensor, bbox_pred: Tensor,
               factor: Optional[Tensor], priors: Tensor):
        """One level's candidates: boxes ``(B, k, 4)`` in the resized
        image, scores, labels, score factors (or None) and valid."""
        b = cls_score.shape[0]
        c = self.head.cls_out_channels - (0 if self.sigmoid else 1)
        scores, index, valid = self._filter(self._level_scores(cls_score))
        anchor = torch.div(index, c, rounding_mode='floor')
        labels = index - anchor * c
        if self.gfl:
            integral = self.head.integral(bbox_pred.permute(0, 2, 3, 1))
            pred = integral.reshape(b, -1, 4) * self.strides[level]
        else:
            dim = self.head.bbox_coder.encode_size
            pred = bbox_pred.permute(0, 2, 3, 1).reshape(b, -1, dim)
        pred = gather_rows(pred, anchor)
        priors = priors[anchor]
        boxes = (self._decode_distances(priors, pred) if self.gfl
                 else self._decode_deltas(priors, pred))
        if factor is not None:
            factor = gather_rows(
                factor.permute(0, 2, 3, 1).reshape(b, -1).sigmoid(), anchor)
        return boxes, scores, labels, factor, valid

    # ----------------------------------------------------------- forward
    def forward(self, image: Tensor, ori_shape: Tensor):
        from mmdet.structures.bbox import get_box_tensor
        x = self.preprocess(image)
        outs = self.head(self.detector.extract_feat(x))
        cls_scores, bbox_preds = outs[0], outs[1]
        factors: List[Optional[Tensor]] = (
            list(outs[2]) if len(outs) > 2 and outs[2] is not None
            else [None] * len(cls_scores))
        sizes = [t.shape[-2:] for t in cls_scores]
        mlvl_priors = [get_box_tensor(p) for p in
                       self.head.prior_generator.grid_priors(
                           sizes, dtype=cls_scores[0].dtype,
                           device=cls_scores[0].device)]
        levels = [self._level(i, c, p, f, pr) for i, (c, p, f, pr) in
                  enumerate(zip(cls_scores, bbox_preds, factors,
                                mlvl_priors))]
        boxes, scores, labels, factor, valid = (
            torch.cat(list(t), 1) if t[0] is not None else None
            for t in zip(*levels))
        # img_shape (h, w) of the resized, unpadded image (graph values)
        hw = torch._shape_as_tensor(image)[2:]
        coder = self.head.bbox_coder
        if coder.clip_border:
            bound = hw.flip(0).repeat(2).to(boxes.dtype)  # w, h, w, h
            boxes = torch.minimum(boxes.clamp(min=0), bound)
        # rescale: 1 / scale_factor, scale_factor = resized / original,
        # in float64 as mmdet's Python floats, then fp32 like new_tensor
        ori = ori_shape.to(torch.float64)
        factor_hw = hw.to(torch.float64)[None] / ori
        inv = (1 / factor_hw).to(boxes.dtype).flip(1).repeat(1, 2)
        boxes = boxes * inv[:, None, :]
        if factor is not None:
            scores = scores * factor
        if self.min_bbox_size >= 0:
            w = boxes[..., 2] - boxes[..., 0]
            h = boxes[..., 3] - boxes[..., 1]
            valid = valid & (w > self.min_bbox_size) & \
                (h > self.min_bbox_size)
        idxs = torch.zeros_like(labels) if self.class_agnostic else labels
        # mmcv switches to per-class NMS from split_thr candidates on: only
        # possible with more candidates than that
        fixed = len(cls_scores) * self.nms_pre if self.nms_pre > 0 else None
        groups = (None if self.class_agnostic or
                  (fixed is not None and fixed < self.split_thr)
                  else self.num_classes)
        keep, ok = batched_nms(boxes, scores, idxs, self.iou_thr,
                               self.max_per_img, valid=valid,
                               num_groups=groups, split_thr=self.split_thr)
        return take_detections(boxes, scores, labels, keep, ok)


@register('single_stage')
def build_single_stage(model: nn.Module) -> SingleStageEnd2End:
    """The end-to-end module of an mmdet single-stage detector."""
    return SingleStageEnd2End(model)


__all__ = ['SingleStageEnd2End', 'build_single_stage']
