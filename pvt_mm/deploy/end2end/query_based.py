"""End-to-end graphs of query-based detectors: Sparse R-CNN.

As mmdet's ``SparseRCNN.predict(..., rescale=True)``: the learnt proposal
boxes (centre / size fractions) scaled to the resized image and the learnt
proposal features; per stage multi-level RoIAlign (:mod:`.roi`), the
dynamic-instance head and the class-agnostic delta decoding of the boxes
(clipped to the image if the coder clips); then the ``max_per_img`` best
(query, class) scores of the last stage (sigmoid, or softmax without the
background) with their boxes divided by ``scale_factor``. No NMS: every
row is a detection (``num_dets`` = ``max_per_img``).

DETR and its relatives (``DetectionTransformer``) have no end-to-end graph
yet: :func:`build_query_based` says so with an :class:`ExportError`.
"""
import torch
import torch.nn as nn
from torch import Tensor

from . import DET_OUTPUTS, register
from .preprocess import Preprocess
from .roi import MultiLevelRoIAlign
from .two_stage import _check_coder, _export_error, delta2bbox


class SparseRCNNEnd2End(nn.Module):
    """``forward(image, ori_shape)`` -> ``dets, scores, labels, num_dets``
    (see :mod:`pvt_mm.deploy.end2end`)."""

    output_names = DET_OUTPUTS

    def __init__(self, model: nn.Module):
        super().__init__()
        from mmdet.models.dense_heads import EmbeddingRPNHead
        from mmdet.models.roi_heads import SparseRoIHead
        from mmdet.models.roi_heads.bbox_heads import DIIHead
        rpn, roi = model.rpn_head, model.roi_head
        if type(rpn) is not EmbeddingRPNHead or \
                type(roi) is not SparseRoIHead:
            raise _export_error(
                f'{type(model).__name__} ({type(rpn).__name__}, '
                f'{type(roi).__name__}): the query-based end-to-end graph '
                f'has Sparse R-CNN (EmbeddingRPNHead + SparseRoIHead) only')
        if roi.with_mask:
            raise _export_error(f'{type(model).__name__}: the end-to-end '
                                f'graph of Sparse R-CNN has no mask head '
                                f'(QueryInst)')
        for head in roi.bbox_head:
            if type(head) is not DIIHead or not head.reg_class_agnostic:
                raise _export_error(f'{type(head).__name__}: the end-to-end '
                                    f'graph has mmdet\'s DIIHead only')
            _check_coder(head.bbox_coder, type(head).__name__)
        self.model = model
        self.preprocess = Preprocess.from_model(model)
        self.extractors = nn.ModuleList(
            MultiLevelRoIAlign(e) for e in roi.bbox_roi_extractor)
        self.heads = roi.bbox_head
        last = roi.bbox_head[-1]
        self.use_sigmoid = bool(last.loss_cls.use_sigmoid)
        self.num_classes = int(last.num_classes)
        self.max_per_img = int(model.test_cfg.rcnn['max_per_img'])
        num_queries = int(rpn.num_proposals)
        if self.max_per_img > num_queries * self.num_classes:
            raise _export_error(
                f'test_cfg.rcnn.max_per_img={self.max_per_img} is more than '
                f'the {num_queries} x {self.num_classes} (query, class) '
                f'scores')

    def forward(self, image: Tensor, ori_shape: Tensor):
        from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
        rpn = self.model.rpn_head
        x = self.preprocess(image)
        feats = self.model.extract_feat(x)
        b = image.shape[0]
        img_hw = torch._shape_as_tensor(image)[2:].to(ori_shape.device)
        wh = img_hw.flip(0).to(feats[0].dtype)
        whwh = torch.cat([wh, wh])
        # EmbeddingRPNHead: learnt (cx, cy, w, h) fractions of the image
        proposals = bbox_cxcywh_to_xyxy(rpn.init_proposal_bboxes.weight)
        proposals = (proposals * whwh)[None].expand(b, -1, -1)
        object_feats = rpn.init_proposal_features.weight[None].expand(
            b, -1, -1)
        n = proposals.shape[1]
        batch_idx = torch.arange(b, device=image.device)[:, None].expand(
            b, n).reshape(-1)
        cls_score = None
        for extractor, head in zip(self.extractors, self.heads):
            rois = proposals.reshape(-1, 4)
            roi_feats = extractor(feats, rois, batch_idx)
            cls_score, deltas, object_feats, _ = head(roi_feats, object_feats)
            coder = head.bbox_coder
            proposals = delta2bbox(
                rois, deltas.reshape(-1, 4), coder.means, coder.stds,
                img_hw if coder.clip_border else None).reshape(b, n, 4)
        if self.use_sigmoid:
            scores = cls_score.sigmoid()
        else:
            scores = cls_score.softmax(-1)[..., :-1]
        scores, inds = scores.flatten(1).topk(self.max_per_img, dim=1)
        labels = inds % self.num_classes
        query = torch.div(inds, self.num_classes, rounding_mode='floor')
        dets = proposals.gather(1, query[..., None].expand(-1, -1, 4))
        # mmdet's Resize: scale_factor = (new_w / w, new_h / h) in float64,
        # stored as float32; boxes divided by it
        scale = (img_hw.flip(0)[None].double()
                 / ori_shape.flip(1).double()).float().repeat(1, 2)
        dets = dets / scale[:, None]
        num_dets = torch.full_like(labels[:, 0], self.max_per_img)
        return dets, scores, labels, num_dets


@register('query_based')
def build_query_based(model: nn.Module) -> nn.Module:
    from mmdet.models.detectors import DetectionTransformer
    if isinstance(model, DetectionTransformer):
        raise _export_error(
            f'{type(model).__name__}: DETR-family detectors have no '
            f'end-to-end graph yet (Sparse R-CNN has); export it with '
            f'--no-end2end (network in ONNX, the query head in PyTorch)')
    return SparseRCNNEnd2End(model)


__all__ = ['SparseRCNNEnd2End', 'build_query_based']
