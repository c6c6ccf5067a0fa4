"""Class-aware NMS for the end-to-end graphs: mmcv's / mmdet's results in
PyTorch, ONNX ``NonMaxSuppression`` in the graph.

Both functions take a batch with a fixed number of candidates per image
and return fixed-size, padded results, the layout an ONNX graph needs.

In eager mode they call mmcv's ``batched_nms`` on each image's candidates
(in index order, as mmdet passes them), so they return what mmdet
computes. While ``torch.onnx.export`` traces them they record the graph
form (:func:`batched_nms_graph`, which also runs eagerly, for tests): the
same arithmetic where it decides results,

* mmcv's class offset trick, ``boxes + idxs * (max coordinate + 1)`` with
  the maximum over the image's candidates, in fp32 like mmcv, so ONNX
  Runtime suppresses with the same shifted coordinates;
* mmcv's ``split_thr``: from ``split_thr`` candidates on, mmcv runs NMS per
  group without offsets; with ``num_groups`` the graph does so too (one
  ``NonMaxSuppression`` class per group) and picks per image by its count
  of candidates, without it the graph always offsets;
* suppression where IoU > ``iou_thr`` and candidates with score >
  ``score_thr``, as both mmcv and ONNX define them.

Results can differ only where fp32 rounding or ordering decides them:
exactly equal scores (mmcv sorts them in an unspecified order, ONNX Runtime
lower index first) and an IoU within rounding of the threshold.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

#: mmcv ``batched_nms``'s default ``split_thr``.
SPLIT_THR = 10000


def exporting() -> bool:
    """Whether the code runs under the ONNX exporter's tracer."""
    return torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()


def _mmcv_nms(boxes: Tensor, scores: Tensor, iou_thr: float) -> Tensor:
    from mmcv.ops import nms
    return nms(boxes, scores, iou_thr)[1]


class _NonMaxSuppression(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` (corner boxes): ``boxes`` ``(B, M, 4)``,
    ``scores`` ``(B, G, M)`` -> ``(K, 3)`` int64 rows ``(batch, group,
    box)``, at most ``max_out`` per (batch, group), of the boxes with score >
    ``score_thr``. Eagerly: mmcv's NMS per (batch, group)."""

    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, max_out: int,
                iou_thr: float, score_thr: float) -> Tensor:
        rows = []
        for b in range(scores.shape[0]):
            for g in range(scores.shape[1]):
                s = scores[b, g]
                cand = (s > score_thr).nonzero().squeeze(1)
                if cand.numel() == 0:
                    continue
                keep = cand[_mmcv_nms(boxes[b, cand], s[cand],
                                      iou_thr)[:max_out]]
                rows.append(torch.stack(
                    [torch.full_like(keep, b), torch.full_like(keep, g),
                     keep], 1))
        if not rows:
            return torch.zeros(0, 3, dtype=torch.int64, device=boxes.device)
        return torch.cat(rows).to(torch.int64)

    @staticmethod
    def symbolic(g, boxes, scores, max_out: int, iou_thr: float,
                 score_thr: float):
        max_out = g.op('Constant',
                       value_t=torch.tensor([max_out], dtype=torch.int64))
        iou = g.op('Constant',
                   value_t=torch.tensor([iou_thr], dtype=torch.float32))
        thr = g.op('Constant',
                   value_t=torch.tensor([score_thr], dtype=torch.float32))
        return g.op('NonMaxSuppression', boxes, scores, max_out, iou, thr,
                    center_point_box_i=0)


def _candidates(scores: Tensor, score_thr: Optional[float],
                valid: Optional[Tensor]) -> Tensor:
    mask = torch.ones_like(scores, dtype=torch.bool)
    if valid is not None:
        mask = mask & valid
    if score_thr is not None:
        mask = mask & (scores > score_thr)
    return mask


def _selected(selected: Tensor, like: Tensor) -> Tensor:
    """``(K, 3)`` NonMaxSuppression rows -> a ``(B, M)`` bool mask."""
    m = like.shape[1]
    flat = selected[:, 0] * m + selected[:, 2]
    hits = torch.zeros_like(like).reshape(-1).scatter(
        0, flat, torch.ones_like(flat, dtype=like.dtype))
    return hits.reshape(like.shape) > 0


def batched_nms_graph(boxes: Tensor, scores: Tensor, idxs: Tensor,
                      iou_thr: float, max_keep: int,
                      score_thr: Optional[float] = None,
                      valid: Optional[Tensor] = None,
                      num_groups: Optional[int] = None,
                      split_thr: int = SPLIT_THR) -> Tuple[Tensor, Tensor]:
    """:func:`batched_nms` as the graph computes it (``NonMaxSuppression``,
    ``TopK``, ``ScatterElements``); it runs eagerly too."""
    cand = _candidates(scores, score_thr, valid)
    lowest = torch.finfo(scores.dtype).min
    # candidates: score > floor; everything else: score = floor
    floor = float(score_thr) if score_thr is not None else lowest
    s = torch.where(cand, scores, torch.full_like(scores, floor))
    # mmcv: offsets = idxs * (boxes.max() + 1) over the candidates, in fp32
    masked = torch.where(cand[..., None], boxes, torch.full_like(boxes, lowest))
    top = masked.flatten(1).max(1).values
    top = torch.where(cand.any(1), top, torch.zeros_like(top))
    offsets = idxs.to(boxes.dtype) * (top[:, None] + torch.ones_like(top[:, None]))
    shifted = boxes + offsets[..., None]
    kept = _selected(_NonMaxSuppression.apply(
        shifted, s[:, None, :], max_keep, iou_thr, floor), s)
    if num_groups is not None:
        # mmcv from split_thr candidates on: NMS per group, no offsets
        groups = torch.arange(num_groups, device=idxs.device)
        per_group = torch.where(idxs[:, None, :] == groups[None, :, None],
                                s[:, None, :], torch.full_like(s[:, None], floor))
        kept_split = _selected(_NonMaxSuppression.apply(
            boxes, per_group, max_keep, iou_thr, floor), s)
        split = cand.sum(1, keepdim=True) >= split_thr
        # (ONNX Runtime has no bool Where)
        kept = (split & kept_split) | (~split & kept)
    # the kept boxes by descending score; max_keep dummies so that TopK's k
    # never exceeds the candidates
    ranked = torch.where(kept, scores, torch.full_like(scores, -float('inf')))
    ranked = torch.cat([ranked, torch.full_like(ranked[:, :1], -float('inf'))
                        .expand(-1, max_keep)], 1)
    values, order = ranked.topk(max_keep, dim=1)
    ok = values > -float('inf')
    return torch.where(ok, order, torch.zeros_like(order)), ok


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_thr: float,
                max_keep: int, score_thr: Optional[float] = None,
                valid: Optional[Tensor] = None,
                num_groups: Optional[int] = None,
                split_thr: int = SPLIT_THR) -> Tuple[Tensor, Tensor]:
    """Class-aware NMS per image, like mmcv's / mmdet's ``batched_nms``.

    Args:
        boxes: ``(B, M, 4)`` ``x1, y1, x2, y2``.
        scores: ``(B, M)``.
        idxs: ``(B, M)`` int64 group ids (class or level): boxes suppress
            only boxes of their group.
        iou_thr: a box is suppressed by a higher-scoring one of its group
            with IoU > ``iou_thr``.
        max_keep: how many kept boxes to return per image.
        score_thr: entries with score <= ``score_thr`` are never kept.
        valid: ``(B, M)`` bool, the entries that take part (default all):
            padding of fixed-size candidate lists.
        num_groups: how many group ids there are (ids ``< num_groups``).
            Given, the graph repeats mmcv's per-group NMS for images with
            ``split_thr`` candidates or more; without it the graph always
            uses mmcv's offset trick (the same results up to the rounding
            of the shifted coordinates).
        split_thr: mmcv's ``split_thr``.

    Returns:
        ``keep`` ``(B, max_keep)`` int64 indices into ``M`` by descending
        score, and ``valid`` ``(B, max_keep)`` bool; padding rows index 0
        and are not valid.
    """
    if exporting():
        return batched_nms_graph(boxes, scores, idxs, iou_thr, max_keep,
                                 score_thr, valid, num_groups, split_thr)
    from mmcv.ops import batched_nms as mmcv_batched_nms
    cand = _candidates(scores, score_thr, valid)
    b_size = scores.shape[0]
    keep = torch.zeros(b_size, max_keep, dtype=torch.int64,
                       device=scores.device)
    ok = torch.zeros(b_size, max_keep, dtype=torch.bool, device=scores.device)
    for b in range(b_size):
        inds = cand[b].nonzero().squeeze(1)
        if inds.numel() == 0:
            continue
        _, k = mmcv_batched_nms(
            boxes[b, inds], scores[b, inds], idxs[b, inds],
            dict(type='nms', iou_threshold=iou_thr, split_thr=split_thr))
        k = inds[k[:max_keep]]
        keep[b, :len(k)] = k
        ok[b, :len(k)] = True
    return keep, ok


def gather_rows(x: Tensor, index: Tensor) -> Tensor:
    """``x`` ``(B, M, ...)`` at ``index`` ``(B, K)`` -> ``(B, K, ...)``."""
    shape = index.shape + x.shape[2:]
    idx = index.reshape(index.shape + (1, ) * (x.dim() - 2)).expand(shape)
    return x.gather(1, idx)


def multiclass_nms(boxes: Tensor, scores: Tensor, score_thr: float,
                   iou_thr: float, max_per_img: int,
                   split_thr: int = SPLIT_THR
                   ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """mmdet's ``multiclass_nms`` (``bbox_nms.py``) for a batch.

    Args:
        boxes: ``(B, N, 4)`` shared by the classes or ``(B, N, C, 4)`` per
            class.
        scores: ``(B, N, C)``, no background column.
        score_thr: (box, class) pairs with score <= ``score_thr`` are
            dropped before NMS.
        iou_thr: NMS IoU threshold, per class.
        max_per_img: ``K``, the detections kept per image.

    Returns:
        ``dets`` ``(B, K, 4)``, ``scores`` ``(B, K)``, ``labels`` ``(B, K)``
        int64 and ``num_dets`` ``(B,)`` int64, by descending score; rows
        past ``num_dets``: boxes and scores 0, label -1.
    """
    num_classes = scores.shape[-1]
    if boxes.dim() == 3:
        boxes = boxes[:, :, None, :].expand(-1, -1, num_classes, -1)
    flat_boxes = boxes.reshape(boxes.shape[0], -1, 4)
    flat_scores = scores.reshape(scores.shape[0], -1)
    labels = (torch.zeros_like(scores, dtype=torch.int64)
              + torch.arange(num_classes, device=scores.device))
    labels = labels.reshape(scores.shape[0], -1)
    keep, ok = batched_nms(flat_boxes, flat_scores, labels, iou_thr,
                           max_per_img, score_thr=score_thr,
                           num_groups=int(num_classes), split_thr=split_thr)
    return take_detections(flat_boxes, flat_scores, labels, keep, ok)


def take_detections(boxes: Tensor, scores: Tensor, labels: Tensor,
                    keep: Tensor, ok: Tensor
                    ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """The contract's ``dets, scores, labels, num_dets`` from the rows
    ``keep`` (valid where ``ok``) of ``(B, M, ...)`` candidates."""
    dets = gather_rows(boxes, keep)
    dets = torch.where(ok[..., None], dets, torch.zeros_like(dets))
    out_scores = gather_rows(scores, keep)
    out_scores = torch.where(ok, out_scores, torch.zeros_like(out_scores))
    out_labels = torch.where(ok, gather_rows(labels, keep),
                             torch.full_like(keep, -1))
    return dets, out_scores, out_labels, ok.sum(1)


__all__ = ['batched_nms', 'batched_nms_graph', 'multiclass_nms',
           'take_detections', 'gather_rows', 'exporting', 'SPLIT_THR']
