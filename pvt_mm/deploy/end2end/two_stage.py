"""End-to-end graphs of two-stage detectors: Faster / Mask R-CNN
(``StandardRoIHead``) and Cascade (Mask) R-CNN (``CascadeRoIHead``).

What the graph computes, step by step as mmdet's
``TwoStageDetector.predict(..., rescale=True)`` does on the CPU:

1. the data preprocessor (:class:`.preprocess.Preprocess`), the backbone,
   the neck;
2. RPN proposals (``RPNHead._predict_by_feat_single``): per level the
   ``nms_pre`` best anchors (``TopK`` of ``min(nms_pre, anchors)``), delta
   decoding clipped to the resized image, boxes not wider and taller than
   ``min_bbox_size`` dropped, NMS within each level at the RPN's IoU
   threshold, the ``max_per_img`` best kept (padded: a fixed number of
   proposal rows with a validity flag);
3. the RoI stage(s): multi-level RoIAlign (:mod:`.roi`), the box head,
   softmax, class-specific delta decoding clipped to the image (Cascade:
   every stage but the last refines the RoIs by the box of its best class;
   the class scores of all stages are averaged before the softmax), then
   mmdet's ``multiclass_nms`` (score threshold, NMS per class,
   ``max_per_img``) on the valid proposals;
4. with a mask head: the mask head on the final boxes (Cascade: the mean of
   every stage's mask probabilities), the mask of each box's class, pasted
   into the original image (:func:`.roi.paste_masks`) and cut at
   ``mask_thr_binary``; boxes rescaled to the original image by
   ``scale_factor`` = resized / original size, as mmdet's ``Resize``
   records it.

Rows past ``num_dets`` are padding (boxes and scores 0, label -1, empty
mask).
"""
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from . import DET_OUTPUTS, MASK_OUTPUTS, register
from .preprocess import Preprocess
from .roi import MultiLevelRoIAlign, paste_masks


def _export_error(msg: str):
    from ..onnx_export import ExportError
    return ExportError(msg)


# ----------------------------------------------------------------- boxes
def delta2bbox(rois: Tensor, deltas: Tensor, means: Sequence[float],
               stds: Sequence[float], max_hw: Optional[Tensor],
               wh_ratio_clip: float = 16 / 1000) -> Tensor:
    """mmdet's ``delta2bbox`` (``DeltaXYWHBBoxCoder``, no centre clamp) on
    broadcastable ``(..., 4)`` boxes and deltas; ``max_hw`` = ``(2,)``
    image height and width to clip to (the resized image, before
    padding)."""
    means = deltas.new_tensor(means)
    stds = deltas.new_tensor(stds)
    d = deltas * stds + means
    dxy, dwh = d[..., :2], d[..., 2:]
    pxy = (rois[..., :2] + rois[..., 2:]) * 0.5
    pwh = rois[..., 2:] - rois[..., :2]
    max_ratio = float(np.abs(np.log(wh_ratio_clip)))
    dwh = dwh.clamp(min=-max_ratio, max=max_ratio)
    gxy = pxy + pwh * dxy
    gwh = pwh * dwh.exp()
    boxes = torch.cat([gxy - gwh * 0.5, gxy + gwh * 0.5], dim=-1)
    if max_hw is not None:
        wh = max_hw.flip(0).to(boxes.dtype)  # (w, h)
        limit = torch.cat([wh, wh])
        boxes = torch.minimum(boxes.clamp(min=0), limit)
    return boxes


def _check_coder(coder, where: str) -> None:
    from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoder
    if type(coder) is not DeltaXYWHBBoxCoder or coder.add_ctr_clamp:
        raise _export_error(
            f'{where}: the end-to-end graph decodes boxes with mmdet\'s '
            f'DeltaXYWHBBoxCoder (no centre clamp) only, not {coder!r}')


def _check_nms(cfg, where: str) -> float:
    nms = dict(cfg.get('nms') or {})
    if nms.get('type', 'nms') != 'nms' or nms.get('class_agnostic'):
        raise _export_error(f'{where}: the end-to-end graph has plain '
                            f'class-aware NMS only, not {nms}')
    return float(nms['iou_threshold'])


# ------------------------------------------------------------------- RPN
class RPNProposals(nn.Module):
    """``RPNHead.predict`` (``rescale=False``) as a padded batch:
    ``forward(feats, img_hw) -> proposals (B, P, 4), valid (B, P)`` with
    ``P`` = the RPN's ``max_per_img``, best first."""

    def __init__(self, head: nn.Module, cfg):
        super().__init__()
        from mmdet.models.dense_heads import RPNHead
        from mmdet.models.task_modules.prior_generators import \
            AnchorGenerator
        if type(head) is not RPNHead:
            raise _export_error(f'{type(head).__name__}: the end-to-end '
                                f'graph has mmdet\'s RPNHead only')
        gen = head.prior_generator
        if type(gen) is not AnchorGenerator:
            raise _export_error(f'{type(gen).__name__}: the end-to-end '
                                f'graph has mmdet\'s AnchorGenerator only')
        _check_coder(head.bbox_coder, 'rpn_head')
        self.head = head
        for i, base in enumerate(gen.base_anchors):
            self.register_buffer(f'base_anchors{i}', base.clone().float(),
                                 persistent=False)
        self.strides = [tuple(s) for s in gen.strides]
        self.num_levels = gen.num_levels
        self.use_sigmoid = bool(head.use_sigmoid_cls)
        self.cls_out_channels = int(head.cls_out_channels)
        self.means = tuple(float(m) for m in head.bbox_coder.means)
        self.stds = tuple(float(s) for s in head.bbox_coder.stds)
        self.clip_border = bool(head.bbox_coder.clip_border)
        self.nms_pre = int(cfg.get('nms_pre', -1))
        self.min_bbox_size = float(cfg.get('min_bbox_size', -1))
        self.iou_thr = _check_nms(cfg, 'test_cfg.rpn')
        self.max_per_img = int(cfg['max_per_img'])

    def anchors(self, level: int, feat: Tensor) -> Tensor:
        """``AnchorGenerator.single_level_grid_priors`` for ``feat``'s
        (dynamic) size: ``(h * w * A, 4)``, location-major."""
        base = getattr(self, f'base_anchors{level}')
        stride_w, stride_h = self.strides[level]
        h, w = feat.shape[-2:]
        shift_x = torch.arange(w, device=feat.device).to(base.dtype) * stride_w
        shift_y = torch.arange(h, device=feat.device).to(base.dtype) * stride_h
        yy, xx = torch.meshgrid(shift_y, shift_x, indexing='ij')
        shifts = torch.stack([xx, yy, xx, yy], dim=-1).reshape(-1, 1, 4)
        return (base[None] + shifts).reshape(-1, 4)

    def forward(self, feats: Sequence[Tensor], img_hw: Tensor
                ) -> Tuple[Tensor, Tensor]:
        from .nms import batched_nms
        cls_scores, bbox_preds = self.head(feats)
        all_boxes, all_scores, all_levels = [], [], []
        for level in range(self.num_levels):
            cls, reg = cls_scores[level], bbox_preds[level]
            b = cls.shape[0]
            cls = cls.permute(0, 2, 3, 1).reshape(b, -1, self.cls_out_channels)
            scores = (cls.sigmoid()[..., 0] if self.use_sigmoid
                      else cls.softmax(-1)[..., 0])
            deltas = reg.permute(0, 2, 3, 1).reshape(b, -1, 4)
            anchors = self.anchors(level, cls_scores[level])
            if self.nms_pre > 0:
                # min(nms_pre, anchors) as a graph value (the count of
                # anchors depends on the image size)
                k = torch.clamp(torch._shape_as_tensor(scores)[1],
                                max=self.nms_pre)
                scores, idx = scores.topk(k, dim=1)
                deltas = deltas.gather(
                    1, idx[..., None].expand(-1, -1, 4))
                anchors = anchors[idx]  # (B, k, 4)
            else:
                anchors = anchors[None].expand(b, -1, -1)
            boxes = delta2bbox(anchors, deltas, self.means, self.stds,
                               img_hw if self.clip_border else None)
            all_boxes.append(boxes)
            all_scores.append(scores)
            all_levels.append(torch.full_like(scores, level,
                                              dtype=torch.long))
        boxes = torch.cat(all_boxes, 1)
        scores = torch.cat(all_scores, 1)
        levels = torch.cat(all_levels, 1)
        big = None
        if self.min_bbox_size >= 0:  # mmdet: w > min and h > min
            wh = boxes[..., 2:] - boxes[..., :2]
            big = (wh > self.min_bbox_size).all(-1)
        keep, valid = batched_nms(boxes, scores, levels, self.iou_thr,
                                  self.max_per_img, valid=big,
                                  num_groups=self.num_levels)
        proposals = boxes.gather(1, keep[..., None].expand(-1, -1, 4))
        proposals = proposals * valid[..., None].to(proposals.dtype)
        return proposals, valid


# ------------------------------------------------------------- RoI heads
class BoxStage(nn.Module):
    """One box head with its RoI extractor: ``forward(feats, rois (N, 4),
    batch_idx (N,)) -> cls_score (N, C + 1), bbox_pred (N, C or 1, 4)``;
    :meth:`decode` its boxes."""

    def __init__(self, extractor: nn.Module, head: nn.Module,
                 shared_head: Optional[nn.Module] = None):
        super().__init__()
        from mmdet.models.roi_heads.bbox_heads import BBoxHead
        if not isinstance(head, BBoxHead) or type(head).predict_by_feat \
                is not BBoxHead.predict_by_feat:
            raise _export_error(f'{type(head).__name__}: the end-to-end '
                                f'graph has mmdet\'s BBoxHead family only')
        if head.custom_cls_channels or not head.with_cls or not head.with_reg:
            raise _export_error(f'{type(head).__name__}: the end-to-end '
                                f'graph needs a softmax classifier and a '
                                f'box regressor')
        _check_coder(head.bbox_coder, type(head).__name__)
        self.extractor = MultiLevelRoIAlign(extractor)
        self.head = head
        self.shared_head = shared_head
        self.num_classes = int(head.num_classes)
        self.agnostic = bool(head.reg_class_agnostic)
        self.means = tuple(float(m) for m in head.bbox_coder.means)
        self.stds = tuple(float(s) for s in head.bbox_coder.stds)
        self.clip_border = bool(head.bbox_coder.clip_border)

    def forward(self, feats, rois, batch_idx):
        x = self.extractor(feats, rois, batch_idx)
        if self.shared_head is not None:
            x = self.shared_head(x)
        cls_score, bbox_pred = self.head(x)
        return cls_score, bbox_pred.reshape(rois.shape[0], -1, 4)

    def decode(self, rois: Tensor, deltas: Tensor, img_hw: Tensor) -> Tensor:
        """``rois (N, 4)``, ``deltas (N, K, 4)`` -> ``(N, K, 4)``."""
        return delta2bbox(rois[:, None], deltas, self.means, self.stds,
                          img_hw if self.clip_border else None)


class MaskStage(nn.Module):
    """An FCN mask head with its RoI extractor: ``forward(feats, rois,
    batch_idx) -> (N, C or 1, h, w)`` probabilities."""

    def __init__(self, extractor: nn.Module, head: nn.Module,
                 shared_head: Optional[nn.Module] = None):
        super().__init__()
        from mmdet.models.roi_heads.mask_heads import FCNMaskHead
        if type(head) is not FCNMaskHead:
            raise _export_error(f'{type(head).__name__}: the end-to-end '
                                f'graph has mmdet\'s FCNMaskHead only')
        self.extractor = MultiLevelRoIAlign(extractor)
        self.head = head
        self.shared_head = shared_head

    def forward(self, feats, rois, batch_idx):
        x = self.extractor(feats, rois, batch_idx)
        if self.shared_head is not None:
            x = self.shared_head(x)
        return self.head(x).sigmoid()


class TwoStageEnd2End(nn.Module):
    """``forward(image, ori_shape)`` -> ``dets, scores, labels, num_dets``
    (``, masks``), see :mod:`pvt_mm.deploy.end2end`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        from mmdet.models.roi_heads import CascadeRoIHead, StandardRoIHead
        roi_head = model.roi_head
        if type(roi_head) not in (StandardRoIHead, CascadeRoIHead):
            raise _export_error(
                f'{type(roi_head).__name__}: the end-to-end graph has '
                f'mmdet\'s StandardRoIHead and CascadeRoIHead only')
        test_cfg = model.test_cfg
        self.model = model
        self.preprocess = Preprocess.from_model(model)
        self.rpn = RPNProposals(model.rpn_head, test_cfg.rpn)
        rcnn = test_cfg.rcnn
        self.score_thr = float(rcnn['score_thr'])
        self.iou_thr = _check_nms(rcnn, 'test_cfg.rcnn')
        self.max_per_img = int(rcnn['max_per_img'])
        self.cascade = isinstance(roi_head, CascadeRoIHead)
        shared = (roi_head.shared_head if roi_head.with_shared_head
                  else None)
        if self.cascade:
            self.box_stages = nn.ModuleList(
                BoxStage(e, h) for e, h in zip(roi_head.bbox_roi_extractor,
                                               roi_head.bbox_head))
        else:
            self.box_stages = nn.ModuleList(
                [BoxStage(roi_head.bbox_roi_extractor, roi_head.bbox_head,
                          shared)])
        self.with_mask = bool(roi_head.with_mask)
        self.mask_stages = nn.ModuleList()
        if self.with_mask:
            self.mask_thr = float(rcnn['mask_thr_binary'])
            if self.mask_thr < 0:
                raise _export_error('mask_thr_binary < 0 (soft masks): the '
                                    'end-to-end graph gives binary masks')
            if self.cascade:
                self.mask_stages.extend(
                    MaskStage(e, h) for e, h in zip(
                        roi_head.mask_roi_extractor, roi_head.mask_head))
            else:
                self.mask_stages.append(MaskStage(
                    roi_head.mask_roi_extractor, roi_head.mask_head, shared))
        self.output_names = MASK_OUTPUTS if self.with_mask else DET_OUTPUTS

    # -------------------------------------------------------------- boxes
    def detect(self, feats, proposals: Tensor, valid: Tensor,
               img_hw: Tensor, scale: Optional[Tensor]):
        """The RoI stages on ``(B, P, 4)`` proposals (valid where
        ``valid``) -> multiclass NMS results: boxes in the resized image,
        or multiplied by ``scale`` (``(B, 4)``, 1 / scale_factor) before the
        NMS when given, as mmdet's box head does without a mask head."""
        from .nms import multiclass_nms
        b, p = proposals.shape[:2]
        rois = proposals.reshape(-1, 4)
        batch_idx = torch.arange(b, device=rois.device)[:, None].expand(
            b, p).reshape(-1)
        stages = list(self.box_stages)
        cls_scores = []
        for i, stage in enumerate(stages):
            cls_score, deltas = stage(feats, rois, batch_idx)
            cls_scores.append(cls_score)
            if i < len(stages) - 1:  # Cascade: refine by the best class
                label = cls_score[:, :-1].argmax(dim=1)
                if not stage.agnostic:
                    deltas = deltas.gather(
                        1, label[:, None, None].expand(-1, 1, 4))
                rois = stage.decode(rois, deltas, img_hw)[:, 0]
        # mmdet: sum of the stages' raw scores / number of stages
        cls_score = cls_scores[0]
        for s in cls_scores[1:]:
            cls_score = cls_score + s
        if len(cls_scores) > 1:
            cls_score = cls_score / float(len(cls_scores))
        scores = cls_score.softmax(-1)[:, :-1]
        boxes = stages[-1].decode(rois, deltas, img_hw)  # (N, C or 1, 4)
        c = boxes.shape[1]
        boxes = boxes.reshape(b, p, c, 4)
        if scale is not None:  # mmdet: boxes * (1 / scale_factor)
            boxes = boxes * scale[:, None, None]
        if c == 1:
            boxes = boxes[:, :, 0]
        scores = scores.reshape(b, p, -1) * valid[..., None].to(scores.dtype)
        return multiclass_nms(boxes, scores, self.score_thr, self.iou_thr,
                              self.max_per_img)

    # -------------------------------------------------------------- masks
    def masks(self, feats, dets: Tensor, labels: Tensor, num_dets: Tensor,
              boxes_ori: Tensor, ori_hw: Tensor) -> Tensor:
        b, k = dets.shape[:2]
        rois = dets.reshape(-1, 4)
        batch_idx = torch.arange(b, device=rois.device)[:, None].expand(
            b, k).reshape(-1)
        probs = [stage(feats, rois, batch_idx) for stage in self.mask_stages]
        if len(probs) > 1:  # Cascade: mmdet's merge_aug_masks, a mean
            prob = torch.stack(probs).mean(dim=0)
        else:
            prob = probs[0]
        if prob.shape[1] > 1:
            label = labels.reshape(-1).clamp(min=0)
            idx = label[:, None, None, None].expand(-1, 1, *prob.shape[2:])
            prob = prob.gather(1, idx)
        pasted = paste_masks(prob[:, 0], boxes_ori.reshape(-1, 4),
                             ori_hw[0], ori_hw[1])
        masks = (pasted >= self.mask_thr).reshape(b, k, *pasted.shape[1:])
        rows = torch.arange(k, device=dets.device)[None] < num_dets[:, None]
        return (masks & rows[..., None, None]).to(torch.uint8)

    def forward(self, image: Tensor, ori_shape: Tensor):
        x = self.preprocess(image)
        feats = self.model.extract_feat(x)
        img_hw = torch._shape_as_tensor(image)[2:].to(ori_shape.device)
        # mmdet's Resize: scale_factor = (new_w / w, new_h / h) in float64,
        # stored as float32 next to the boxes
        scale = (img_hw.flip(0)[None].double()
                 / ori_shape.flip(1).double())  # (B, 2): w, h
        proposals, valid = self.rpn(feats, img_hw)
        # without a mask head the box head multiplies by 1 / scale_factor
        # (before the NMS), with one the mask head divides by it (after)
        dets, scores, labels, num_dets = self.detect(
            feats, proposals, valid, img_hw,
            None if self.with_mask else (1 / scale).float().repeat(1, 2))
        if not self.with_mask:
            return dets, scores, labels, num_dets
        boxes_ori = dets / scale.float().repeat(1, 2)[:, None]
        masks = self.masks(feats, dets, labels, num_dets, boxes_ori,
                           ori_shape[0])
        return boxes_ori, scores, labels, num_dets, masks


@register('two_stage')
def build_two_stage(model: nn.Module) -> nn.Module:
    return TwoStageEnd2End(model)


__all__ = ['TwoStageEnd2End', 'RPNProposals', 'delta2bbox',
           'build_two_stage']
