"""End-to-end ONNX graphs of two-stage detectors (pvt_mm.deploy.end2end
.two_stage / .roi) against mmdet, with tiny models and random images.

* the pieces, eagerly and in ONNX Runtime: multi-level RoIAlign (ONNX
  ``RoiAlign``, opset 16 half-pixel) against mmcv's ``RoIAlign`` and
  mmdet's ``SingleRoIExtractor``, mask pasting against mmdet's
  ``_do_paste_mask``;
* whole models (Mask R-CNN with PVTv2 and CvT, Cascade Mask R-CNN with
  PVTv2): exported once at 64x64, run by ONNX Runtime at sizes not seen at
  export (a batch of 2, an original size other than the image's), against
  mmdet's ``model.predict(..., rescale=True)`` on the same resized image;
  the eager end-to-end module against ``predict`` too. Boxes, scores and
  labels follow docs/testing.md (a twin within ``1e-4`` in score and
  ``1e-3`` of the image side, except at the score cut-off or in an NMS
  tie); masks may differ at pixels of probability 0.5 (at most 1% of a
  mask);
* the graph holds standard ONNX operators only, RoiAlign and
  NonMaxSuppression among them;
* negative controls: RoIAlign without the half-pixel offset, a wrong
  level mapping, a shifted paste and a perturbed box-head weight all fail
  the same comparisons.
"""
import copy
import io
import warnings

import numpy as np
import pytest
import torch

from helpers import (spread_weights, tiny_backbone_config,
                     tiny_dense_config)

ort = pytest.importorskip('onnxruntime')
onnx = pytest.importorskip('onnx')
pytestmark = pytest.mark.usefixtures('fast_config_parsing', 'one_thread')

#: fp32 tolerances of docs/testing.md
SCORE_TOL, BOX_TOL_OF_SIDE = 1e-4, 1e-3
#: masks of twins may differ where mmdet's probability is within
#: MASK_PROB_TOL of 0.5, plus what the boxes' difference explains
#: (:func:`mask_differences`); MASK_CELLS: FCNMaskHead's 28 x 28
MASK_PROB_TOL, MASK_CELLS = 1e-4, 28
EXPORT_SHAPE = (64, 64)
#: image (H, W), batch, original (H, W): sizes not seen at export
# (the second's width and height scale differently, as rounding makes them)
RUN_CASES = [((96, 160), 1, (96, 160)), ((128, 96), 2, (201, 149))]


# ------------------------------------------------------------------ models
def tiny_cascade_config(backbone: str):
    """configs/demo/cascade_mask_rcnn_pvt_v2_b0_demo.py narrowed like
    :func:`helpers.tiny_dense_config` (which takes one box head; the
    cascade has three)."""
    cfg = tiny_backbone_config('cascade_mask_rcnn_pvt_v2_b0_demo.py',
                               backbone)
    m = cfg.model
    m.rpn_head.update(in_channels=32, feat_channels=32)
    m.roi_head.bbox_roi_extractor.out_channels = 32
    m.roi_head.mask_roi_extractor.out_channels = 32
    m.roi_head.bbox_head = [dict(h, in_channels=32, conv_out_channels=16,
                                 fc_out_channels=32, num_shared_convs=1)
                            for h in m.roi_head.bbox_head]
    m.roi_head.mask_head.update(in_channels=32, conv_out_channels=16,
                                num_convs=1)
    return cfg


def center_mask_logits(model):
    """Shift each mask head's class logits to mean 0 on a random image, so
    the tiny random heads give masks of about half their box (the raw
    heads leave most masks empty: nothing to compare)."""
    from mmdet.structures.bbox import bbox2roi
    head = model.roi_head
    heads = head.mask_head if isinstance(head.mask_head, torch.nn.ModuleList) \
        else [head.mask_head]
    extractors = (head.mask_roi_extractor
                  if isinstance(head.mask_roi_extractor, torch.nn.ModuleList)
                  else [head.mask_roi_extractor])
    g = torch.Generator().manual_seed(2)
    image = torch.rand(1, 3, 96, 96, generator=g)
    boxes = torch.tensor([[4., 4., 60., 70.], [20., 10., 90., 50.],
                          [0., 30., 40., 96.], [30., 30., 50., 60.]])
    with torch.no_grad():
        feats = model.extract_feat(image)
        for extractor, mask_head in zip(extractors, heads):
            logits = mask_head(extractor(feats[:extractor.num_inputs],
                                         bbox2roi([boxes])))
            mask_head.conv_logits.bias -= logits.mean(dim=(0, 2, 3))
    return model


def tiny_two_stage(name: str, backbone: str):
    from pvt_mm.deploy import load_model
    cfg = (tiny_cascade_config(backbone) if name.startswith('cascade')
           else tiny_dense_config(name, backbone))
    return center_mask_logits(spread_weights(load_model(cfg)))


def predict(model, image: torch.Tensor, ori_shape):
    """mmdet's ``predict(rescale=True)`` for a resized ``image`` batch
    (uint8, BGR) of original size ``ori_shape``, with the metainfo mmdet's
    test pipeline gives it. With a mask head each result also carries
    ``probs``: the pasted mask probabilities mmdet cut at 0.5 (recorded
    from its ``_do_paste_mask``)."""
    import mmdet.models.roi_heads.mask_heads.fcn_mask_head as fcn
    from mmdet.structures import DetDataSample
    b, _, h, w = image.shape
    oh, ow = ori_shape
    samples = [DetDataSample(metainfo=dict(
        img_shape=(h, w), ori_shape=(oh, ow),
        scale_factor=(w / ow, h / oh))) for _ in range(b)]
    data = model.data_preprocessor(
        {'inputs': list(image), 'data_samples': samples}, False)
    pasted = []
    paste = fcn._do_paste_mask

    def recording_paste(*args, **kwargs):
        out = paste(*args, **kwargs)
        pasted.append(out)
        return out

    fcn._do_paste_mask = recording_paste
    try:
        with torch.no_grad():
            out = model.predict(data['inputs'], data['data_samples'],
                                rescale=True)
    finally:
        fcn._do_paste_mask = paste
    results = [s.pred_instances for s in out]
    for r in results:
        if 'masks' not in r:
            continue
        # on the CPU mmdet pastes one instance per call, image by image
        r.probs = torch.zeros(r.masks.shape)
        for k in range(len(r)):
            probs, region = pasted.pop(0)
            r.probs[(k, ) + region] = probs[0]
    return results


class Dets:
    """One image's valid rows of the contract's outputs."""

    def __init__(self, outputs, i):
        n = int(outputs[3][i])
        as_t = (lambda a: torch.as_tensor(np.asarray(a)))
        self.bboxes = as_t(outputs[0][i][:n])
        self.scores = as_t(outputs[1][i][:n])
        self.labels = as_t(outputs[2][i][:n])
        self.masks = as_t(outputs[4][i][:n]).bool() if len(outputs) > 4 \
            else None
        self.padding = [as_t(o[i][n:]) for o in outputs[:3]]

    def __len__(self):
        return len(self.scores)


def run_ort(path: str, image: torch.Tensor, ori_shape):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(path, options,
                                   providers=['CPUExecutionProvider'])
    ori = np.array([ori_shape] * image.shape[0], dtype=np.int64)
    return session.run(None, {'image': image.numpy(), 'ori_shape': ori})


def unexplained_detections(ref, got, side: float, iou_thr: float,
                           max_dets: int):
    """Detections of either side without a twin on the other (same label,
    score within SCORE_TOL, box within BOX_TOL_OF_SIDE x side), less those
    fp32 rounding or the order of equal scores may decide:

    * the cut-off: a score within SCORE_TOL of the lowest kept one, or not
      above the other side's lowest when that side holds ``max_dets``
      (another detection there may push it out);
    * an NMS tie: a detection of its class on either side that overlaps it
      (IoU > ``iou_thr``) with a score within SCORE_TOL (equal scores are
      no rarity: thin RoIs at the image border pool the same clamped
      pixels; mmcv orders them as its sort does, ONNX Runtime by index);
    * a consequence of one: the other side has a detection of its class
      without a twin here, explained itself, scored at least as high, that
      overlaps it (NMS there suppressed it, or this one's absence here let
      it through); repeated until nothing changes.

    Returns ``[(count, fraction with a twin)]`` for ``ref`` and ``got``."""
    from mmdet.structures.bbox import bbox_overlaps

    def near(a, b):
        if len(a) == 0 or len(b) == 0:
            return torch.zeros(len(a), len(b), dtype=torch.bool)
        n = ((a.bboxes[:, None] - b.bboxes[None]).abs().amax(-1)
             <= BOX_TOL_OF_SIDE * side)
        n &= a.labels[:, None] == b.labels[None]
        return n & ((a.scores[:, None] - b.scores[None]).abs() <= SCORE_TOL)

    def overlaps(a, b, score_ok):
        if len(a) == 0 or len(b) == 0:
            return torch.zeros(len(a), len(b), dtype=torch.bool)
        o = bbox_overlaps(a.bboxes, b.bboxes) > iou_thr
        o &= a.labels[:, None] == b.labels[None]
        return o & score_ok(a.scores[:, None], b.scores[None])

    def close(x, y):
        return (x - y).abs() <= SCORE_TOL

    sides = ((ref, got), (got, ref))
    twin = [near(a, b).any(1) for a, b in sides]
    explained = []
    for (a, b), t in zip(sides, twin):
        if len(a) == 0:
            explained.append(t)
            continue
        cutoff = min(a.scores.min(), b.scores.min() if len(b) else 1.)
        at_cutoff = close(a.scores, cutoff)
        if len(b) >= max_dets:
            at_cutoff |= a.scores <= b.scores.min() + SCORE_TOL
        own = overlaps(a, a, close)
        own.fill_diagonal_(False)
        tie = own.any(1) | overlaps(a, b, close).any(1)
        explained.append(t | at_cutoff | tie)
    # by a higher (or tied) detection of the other side without a twin
    beaten = [overlaps(a, b, lambda x, y: y >= x - SCORE_TOL)
              for a, b in sides]
    while True:
        grown = [e | (beaten[k] & (~twin[1 - k] & explained[1 - k])[None]
                      ).any(1)
                 for k, e in enumerate(explained)]
        if all(torch.equal(g, e) for g, e in zip(grown, explained)):
            break
        explained = grown
    return [(int((~e).sum()), float(t.float().mean()) if len(t) else 1.)
            for e, t in zip(explained, twin)]


def assert_same_detections(ref, got, side: float, iou_thr: float,
                           max_dets: int):
    for unexplained, twins in unexplained_detections(ref, got, side,
                                                     iou_thr, max_dets):
        assert unexplained == 0, (unexplained, len(ref), len(got))
        assert twins >= 0.9  # ties are rare
    for pad, fill in zip(getattr(got, 'padding', []), (0, 0, -1)):
        assert (pad == fill).all()


def mask_differences(ref, got, side: float):
    """Per instance of ``ref`` with a twin in ``got`` (same label, score
    within SCORE_TOL, box within BOX_TOL_OF_SIDE x side): the largest
    distance from 0.5 of mmdet's probability at the pixels where the masks
    differ (0 if none), and the distance rounding can explain there:
    MASK_PROB_TOL plus ``S * d / min(w, h)``, where ``d`` is how far the
    twins' boxes differ, ``S`` the mask's side in cells and ``w, h`` the
    box's: the boxes' difference moves the sampling points by up to that
    many mask cells, and the pasted probability interpolates values in
    [0, 1] linearly between cells (at most 1 per cell)."""
    out = []
    if len(ref) == 0 or len(got) == 0:
        return out
    d = (ref.bboxes[:, None] - got.bboxes[None]).abs().amax(-1)
    d[ref.labels[:, None] != got.labels[None]] = float('inf')
    d[(ref.scores[:, None] - got.scores[None]).abs() > SCORE_TOL] = \
        float('inf')
    wh = (ref.bboxes[:, 2:] - ref.bboxes[:, :2]).amin(1)
    for i in range(len(ref)):
        j = int(d[i].argmin())
        if d[i, j] > BOX_TOL_OF_SIDE * side:
            continue
        differ = ref.masks[i] != got.masks[j]
        gap = (float((ref.probs[i][differ] - 0.5).abs().max())
               if differ.any() else 0.)
        out.append((gap, MASK_PROB_TOL
                    + MASK_CELLS * float(d[i, j] / wh[i].clamp(min=1e-6))))
    return out


def assert_same_masks(ref, got, side: float):
    """Masks of twins differ only at pixels of probability 0.5 (see
    :func:`mask_differences`); 90% of the instances have a twin."""
    assert ref.masks.shape[1:] == got.masks.shape[1:]
    gaps = mask_differences(ref, got, side)
    assert len(gaps) >= 0.9 * len(ref), (len(gaps), len(ref))
    for gap, allowed in gaps:
        assert gap <= allowed, (gap, allowed)


def export(model, path):
    from pvt_mm.deploy.end2end.export import export_end2end
    export_end2end(model, path, shape=EXPORT_SHAPE, verify=False)
    return path


def onnx_ops(path):
    proto = onnx.load(path)
    return [(n.domain, n.op_type, n) for n in proto.graph.node]


# ----------------------------------------------------------- RoI pieces
def _export_module(module, args, names, dynamic, opset=17):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(module, args, buf, dynamo=False,
                          opset_version=opset, input_names=names,
                          dynamic_axes=dynamic)
    return ort.InferenceSession(buf.getvalue(),
                                providers=['CPUExecutionProvider'])


def random_rois(n, width, height, seed=0, max_side=150.):
    """``n`` boxes over (and a little past) a ``width x height`` image,
    sides spread from zero to ``max_side`` (all RoIAlign levels), a few of
    zero width or height."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * torch.tensor([width + 20.,
                                                       height + 20.]) - 10
    # log-uniform sides from 1 pixel to max_side
    wh = torch.exp(torch.rand(n, 2, generator=g) * np.log(max_side))
    rois = torch.cat([xy, xy + wh], 1)
    rois[:3, 2] = rois[:3, 0]
    rois[3:5, 3] = rois[3:5, 1]
    return rois


class _RoIAlignModule(torch.nn.Module):
    def __init__(self, aligned, sampling_ratio, scale):
        super().__init__()
        self.args = aligned, sampling_ratio, scale

    def forward(self, feat, rois, batch_idx):
        from pvt_mm.deploy.end2end.roi import roi_align
        aligned, sampling_ratio, scale = self.args
        return roi_align(feat, rois, batch_idx, (7, 7), scale,
                         sampling_ratio, aligned)


def test_roi_align_matches_mmcv():
    """ONNX RoiAlign (opset 16, half_pixel / output_half_pixel) samples
    the points mmcv's RoIAlign samples, with adaptive and fixed sampling,
    tiny, empty and partly outside boxes; without the half-pixel offset it
    does not."""
    from mmcv.ops import roi_align as mmcv_roi_align
    g = torch.Generator().manual_seed(0)
    feat = torch.randn(2, 4, 20, 24, generator=g)
    rois = random_rois(200, 96, 80, max_side=120.)
    batch_idx = torch.randint(0, 2, (200, ), generator=g)
    rois5 = torch.cat([batch_idx[:, None].float(), rois], 1)
    sessions = {}
    for aligned in (True, False):
        for sr in (0, 2):
            module = _RoIAlignModule(aligned, sr, 0.25)
            sessions[aligned, sr] = session = _export_module(
                module, (feat, rois, batch_idx), ['f', 'r', 'b'],
                {'r': {0: 'n'}, 'b': {0: 'n'}})
            ref = mmcv_roi_align(feat, rois5, (7, 7), 0.25, sr, 'avg',
                                 aligned)
            # other RoIs than at export, and none
            for n in (200, 37, 0):
                got = session.run(None, {'f': feat.numpy(),
                                         'r': rois[:n].numpy(),
                                         'b': batch_idx[:n].numpy()})[0]
                assert got.shape == (n, 4, 7, 7)
                err = np.abs(got - ref[:n].numpy()).max() if n else 0.
                assert err <= 1e-5 * ref.abs().max(), (aligned, sr, err)
            eager = module(feat, rois, batch_idx)
            assert torch.equal(eager, ref)
    # negative control: output_half_pixel against mmcv's aligned=True
    got = sessions[False, 0].run(None, {'f': feat.numpy(), 'r': rois.numpy(),
                                        'b': batch_idx.numpy()})[0]
    ref = mmcv_roi_align(feat, rois5, (7, 7), 0.25, 0, 'avg', True)
    assert np.abs(got - ref.numpy()).max() > 0.1 * ref.abs().max()


def test_roi_align_needs_opset_16():
    from pvt_mm.deploy import ExportError
    module = _RoIAlignModule(True, 0, 0.25)
    args = (torch.zeros(1, 2, 8, 8), torch.zeros(3, 4),
            torch.zeros(3, dtype=torch.long))
    with pytest.raises(ExportError, match='opset >= 16'):
        _export_module(module, args, ['f', 'r', 'b'], {}, opset=15)


class _ExtractorModule(torch.nn.Module):
    def __init__(self, extractor):
        super().__init__()
        from pvt_mm.deploy.end2end.roi import MultiLevelRoIAlign
        self.pool = MultiLevelRoIAlign(extractor)

    def forward(self, f0, f1, f2, f3, rois, batch_idx):
        return self.pool((f0, f1, f2, f3), rois, batch_idx)


def test_multi_level_roi_align_matches_single_roi_extractor():
    """Each RoI pooled at mmdet's level (sqrt(area) against finest_scale
    56, boundaries included) from the right image: eager and ONNX Runtime
    against SingleRoIExtractor, at another image size and RoI count than
    at export; a wrong level mapping fails."""
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor

    from pvt_mm.deploy.end2end.roi import roi_levels
    extractor = SingleRoIExtractor(
        roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
        out_channels=4, featmap_strides=[4, 8, 16, 32])
    g = torch.Generator().manual_seed(0)

    def feats(h, w):
        return [torch.randn(2, 4, h // s, w // s, generator=g)
                for s in (4, 8, 16, 32)]

    def rois_for(h, w, n, seed):
        rois = random_rois(n, w, h, seed=seed, max_side=700.)
        # exact level boundaries: sqrt(area) = 112, 224, 448
        rois[5:8, :2] = 3.
        rois[5:8, 2:] = 3. + torch.tensor([112., 224., 448.])[:, None]
        return rois, torch.randint(0, 2, (n, ), generator=g)

    module = _ExtractorModule(extractor)
    args = (*feats(128, 160), *rois_for(128, 160, 64, 0))
    names = ['f0', 'f1', 'f2', 'f3', 'r', 'b']
    dynamic = {f'f{i}': {0: 'b', 2: f'h{i}', 3: f'w{i}'} for i in range(4)}
    dynamic.update({'r': {0: 'n'}, 'b': {0: 'n'}})
    session = _export_module(module, args, names, dynamic)
    for (h, w), n, seed in (((128, 160), 64, 0), ((256, 192), 150, 1)):
        fs = feats(h, w)
        rois, batch_idx = rois_for(h, w, n, seed)
        rois5 = torch.cat([batch_idx[:, None].float(), rois], 1)
        levels = extractor.map_roi_levels(rois5, 4)
        assert torch.equal(roi_levels(rois, 56., 4), levels)
        assert set(levels.tolist()) == {0, 1, 2, 3}
        assert levels[5:8].tolist() == [1, 2, 3]
        with torch.no_grad():
            ref = extractor(fs, rois5)
            eager = module(*fs, rois, batch_idx)
        assert torch.equal(eager, ref)
        got = session.run(None, dict(zip(names, [t.numpy() for t in (
            *fs, rois, batch_idx)])))[0]
        assert np.abs(got - ref.numpy()).max() <= 1e-5 * ref.abs().max()
    # negative control: a level mapping off by one level (finest_scale
    # 28) moves a quarter of the RoIs or more and the comparison flags them
    wrong = copy.deepcopy(extractor)
    wrong.finest_scale = 28
    with torch.no_grad():
        bad = _ExtractorModule(wrong)(*fs, rois, batch_idx)
    moved = wrong.map_roi_levels(rois5, 4) != levels
    flagged = (bad - ref).abs().amax(dim=(1, 2, 3)) > 1e-5 * ref.abs().max()
    seen = ref.abs().amax(dim=(1, 2, 3)) > 0  # not wholly off the maps
    assert (moved & seen).float().mean() > 0.2
    assert flagged[moved & seen].all()


class _PasteModule(torch.nn.Module):
    def forward(self, masks, boxes, shape):
        from pvt_mm.deploy.end2end.roi import paste_masks
        return paste_masks(masks, boxes, shape[0], shape[1])


def reference_paste(masks, boxes, h, w):
    """mmdet's CPU paste: one ``_do_paste_mask(skip_empty=True)`` per box
    into an empty image."""
    from mmdet.models.roi_heads.mask_heads.fcn_mask_head import \
        _do_paste_mask
    out = torch.zeros(len(masks), h, w)
    for i in range(len(masks)):
        pasted, region = _do_paste_mask(masks[i:i + 1, None],
                                        boxes[i:i + 1], h, w,
                                        skip_empty=True)
        out[(torch.tensor([i]), ) + region] = pasted
    return out


def test_paste_masks_matches_do_paste_mask():
    """Pasting (separable bilinear weights, mmdet's region of a box grown
    by a pixel, zero-width boxes as mmdet treats them) against mmdet's
    ``_do_paste_mask``, eagerly and in ONNX Runtime at two image sizes;
    a paste shifted by half a pixel fails."""
    g = torch.Generator().manual_seed(0)
    n = 40
    masks = torch.rand(n, 28, 28, generator=g)

    def boxes_in(h, w):
        size = torch.tensor([w, h], dtype=torch.float)
        xy = torch.rand(n, 2, generator=g) * size
        wh = torch.rand(n, 2, generator=g) ** 2 * size * 1.5
        boxes = torch.cat([xy, torch.minimum(xy + wh, size)], 1)
        boxes[:2, 2] = boxes[:2, 0]  # zero width, as clipping makes them
        boxes[2, :] = torch.cat([size, size])  # at the corner
        return boxes

    boxes = boxes_in(60, 90)
    session = _export_module(_PasteModule(), (masks, boxes,
                                              torch.tensor([60, 90])),
                             ['m', 'b', 's'],
                             {'m': {0: 'n'}, 'b': {0: 'n'}})
    for h, w in ((60, 90), (150, 110)):
        boxes = boxes_in(h, w)
        ref = reference_paste(masks, boxes, h, w)
        shape = torch.tensor([h, w])
        eager = _PasteModule()(masks, boxes, shape)
        got = torch.from_numpy(session.run(None, {
            'm': masks.numpy(), 'b': boxes.numpy(), 's': shape.numpy()})[0])
        for out in (eager, got):
            assert out.shape == ref.shape
            assert (out - ref).abs().max() <= 1e-5
            differ = (out >= 0.5) != (ref >= 0.5)
            assert ((ref[differ] - 0.5).abs() <= 1e-5).all()
    shifted = _PasteModule()(masks, boxes + 0.5, shape)
    assert ((shifted >= 0.5) != (ref >= 0.5)).sum() > 0.01 * (ref >= .5).sum()


# ------------------------------------------------------------ whole models
def graph_checks(path, model):
    ops = onnx_ops(path)
    assert {d for d, _, _ in ops} <= {'', 'ai.onnx'}  # no custom domains
    types = {t for _, t, _ in ops}
    assert {'RoiAlign', 'NonMaxSuppression', 'TopK'} <= types
    for _, t, node in ops:
        if t == 'RoiAlign':
            attrs = {a.name: onnx.helper.get_attribute_value(a)
                     for a in node.attribute}
            assert attrs['coordinate_transformation_mode'] == b'half_pixel'
            assert attrs['sampling_ratio'] == 0
    names = [o.name for o in onnx.load(path).graph.output]
    assert names == ['dets', 'scores', 'labels', 'num_dets', 'masks']


def compare_model(model, path, check_eager=True):
    """ONNX Runtime (and the eager module) against mmdet's predict at the
    sizes of RUN_CASES."""
    from pvt_mm.deploy.end2end import build_end2end
    module = build_end2end(model).eval() if check_eager else None
    iou_thr = model.test_cfg.rcnn.nms.iou_threshold
    g = torch.Generator().manual_seed(3)
    for (h, w), b, ori in RUN_CASES:
        image = torch.randint(0, 256, (b, 3, h, w), generator=g,
                              dtype=torch.uint8)
        ref = predict(model, image, ori)
        outs = [run_ort(path, image, ori)]
        if module is not None:
            with torch.no_grad():
                outs.append(module(image, torch.tensor([ori] * b)))
        side = max(ori)
        for out in outs:
            assert out[4].shape == (b, model.test_cfg.rcnn.max_per_img, *ori)
            for i in range(b):
                got = Dets(out, i)
                assert len(ref[i]) > 10  # something to compare
                assert_same_detections(ref[i], got, side, iou_thr,
                                       model.test_cfg.rcnn.max_per_img)
                assert_same_masks(ref[i], got, side)
                # most masks are not empty
                assert ref[i].masks.flatten(1).any(1).float().mean() > 0.8
                pad = np.asarray(out[4][i][int(out[3][i]):])
                assert not pad.any()
    return module


@pytest.mark.parametrize('name,backbone', [
    ('mask_rcnn_pvt_v2_b0_demo.py', 'pvtv2'),
    ('mask_rcnn_pvt_v2_b0_demo.py', 'cvt'),
    ('cascade_mask_rcnn_pvt_v2_b0_demo.py', 'pvtv2'),
])
def test_two_stage_end2end_matches_predict(tmp_path, name, backbone):
    model = tiny_two_stage(name, backbone)
    path = export(model, str(tmp_path / 'model.onnx'))
    graph_checks(path, model)
    compare_model(model, path, check_eager=backbone == 'pvtv2')


def test_two_stage_negative_control(tmp_path):
    """1% noise on one weight tensor after export, the comparisons above
    flag it: the box classifier's (detections without a twin) or the mask
    head's (masks that differ where the probability is not 0.5)."""
    model = tiny_two_stage('mask_rcnn_pvt_v2_b0_demo.py', 'pvtv2')
    path = export(model, str(tmp_path / 'model.onnx'))
    (h, w), b, ori = RUN_CASES[0]
    image = torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8)
    got = Dets(run_ort(path, image, ori), 0)
    max_dets = model.test_cfg.rcnn.max_per_img
    head = model.roi_head
    for weight in (head.bbox_head.fc_cls.weight,
                   head.mask_head.conv_logits.weight):
        saved = weight.detach().clone()
        with torch.no_grad():
            weight.add_(0.01 * weight.std() * torch.randn(weight.shape))
        ref = predict(model, image, ori)[0]
        with torch.no_grad():
            weight.copy_(saved)
        (bad_ref, _), (bad_got, _) = unexplained_detections(
            ref, got, max(ori), 0.5, max_dets)
        flagged = [gap > allowed for gap, allowed in
                   mask_differences(ref, got, max(ori))]
        if weight is head.bbox_head.fc_cls.weight:
            assert bad_ref + bad_got > 0.5 * (len(ref) + len(got))
        else:  # boxes untouched; masks flagged (38% of them, 0 unperturbed)
            assert bad_ref + bad_got == 0
            assert sum(flagged) > 0.25 * len(flagged)


# ------------------------------------------------------------ Sparse R-CNN
def tiny_sparse_rcnn(backbone: str):
    """configs/demo/sparse_rcnn_pvt_v2_b0_demo.py narrowed like the others,
    with :func:`helpers.spread_weights`, except the LayerNorms of the
    dynamic-instance heads (random ones collapse the queries' features
    onto one: all scores within 1e-4), their box regressors (scaled down)
    and the learnt proposals (spread over the image instead of random
    signs)."""
    from pvt_mm.deploy import load_model
    cfg = tiny_backbone_config('sparse_rcnn_pvt_v2_b0_demo.py', backbone)
    m = cfg.model
    m.rpn_head.proposal_feature_channel = 32
    m.roi_head.proposal_feature_channel = 32
    m.roi_head.bbox_roi_extractor.out_channels = 32
    m.roi_head.bbox_head = [
        dict(h, in_channels=32, feedforward_channels=64, num_heads=2,
             dynamic_conv_cfg=dict(h['dynamic_conv_cfg'], in_channels=32,
                                   out_channels=32, feat_channels=16))
        for h in m.roi_head.bbox_head]
    model = spread_weights(load_model(cfg))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for head in model.roi_head.bbox_head:
            for module in head.modules():
                if isinstance(module, torch.nn.LayerNorm):
                    module.reset_parameters()
            # box steps of a few per cent a stage (random ones compound
            # over six stages to boxes thousands of pixels off the image)
            head.fc_reg.weight.mul_(0.05)
            head.fc_reg.bias.mul_(0.05)
        boxes = model.rpn_head.init_proposal_bboxes.weight  # cx, cy, w, h
        boxes.copy_(torch.cat([torch.rand(len(boxes), 2, generator=g),
                               torch.rand(len(boxes), 2, generator=g) * 0.6
                               + 0.05], 1))
    return model


def test_sparse_rcnn_end2end_matches_predict(tmp_path):
    """Sparse R-CNN (no NMS: six RoIAlign + dynamic-instance stages, top
    (query, class) scores): ONNX Runtime and the eager module against
    mmdet's predict at sizes not seen at export."""
    from pvt_mm.deploy.end2end import build_end2end
    model = tiny_sparse_rcnn('pvtv2')
    path = export(model, str(tmp_path / 'sparse.onnx'))
    ops = onnx_ops(path)
    assert {d for d, _, _ in ops} <= {'', 'ai.onnx'}
    types = {t for _, t, _ in ops}
    assert 'RoiAlign' in types and 'NonMaxSuppression' not in types
    module = build_end2end(model).eval()
    k = model.test_cfg.rcnn.max_per_img
    g = torch.Generator().manual_seed(3)
    for (h, w), b, ori in RUN_CASES:
        image = torch.randint(0, 256, (b, 3, h, w), generator=g,
                              dtype=torch.uint8)
        ref = predict(model, image, ori)
        with torch.no_grad():
            eager = module(image, torch.tensor([ori] * b))
        for out in (run_ort(path, image, ori), eager):
            assert out[0].shape == (b, k, 4)
            for i in range(b):
                got = Dets(out, i)
                assert len(got) == len(ref[i]) == k
                # no NMS: nothing overlaps into a tie (IoU > 1 never holds)
                assert_same_detections(ref[i], got, max(ori), 1.01, k)


def test_query_based_refuses_detr():
    from helpers import tiny_dense_config as config

    from pvt_mm.deploy import ExportError, load_model
    from pvt_mm.deploy.end2end import build_end2end
    model = load_model(config('detr_pvt_v2_b0_demo.py', 'pvtv2'))
    with pytest.raises(ExportError, match='DETR-family .* --no-end2end'):
        build_end2end(model)


def test_faster_rcnn_end2end_matches_predict(tmp_path):
    """Without a mask head mmdet rescales the boxes before the NMS (with one,
    after): Mask R-CNN less its mask head, one size not seen at export."""
    from pvt_mm.deploy import load_model
    from pvt_mm.deploy.end2end import build_end2end
    cfg = tiny_dense_config('mask_rcnn_pvt_v2_b0_demo.py', 'pvtv2')
    cfg.model.roi_head.mask_head = None
    cfg.model.roi_head.mask_roi_extractor = None
    model = spread_weights(load_model(cfg))
    path = export(model, str(tmp_path / 'faster.onnx'))
    assert [o.name for o in onnx.load(path).graph.output] == [
        'dets', 'scores', 'labels', 'num_dets']
    (h, w), b, ori = RUN_CASES[1]
    image = torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8)
    ref = predict(model, image, ori)
    with torch.no_grad():
        eager = build_end2end(model)(image, torch.tensor([ori] * b))
    for out in (run_ort(path, image, ori), eager):
        for i in range(b):
            assert len(ref[i]) > 10
            assert_same_detections(ref[i], Dets(out, i), max(ori), 0.5,
                                   model.test_cfg.rcnn.max_per_img)


def test_export_check_of_saturated_scores(tmp_path):
    """Mask R-CNN whose class scores saturate (fc_cls weights x50: every
    kept score is 1.0, as a confident trained model's can be): each side
    keeps its own members of the tie at the max_per_img cut. The
    exporter's check passes it, saying how many detections it could
    compare; a greedy first-fit pairing with the old tie budget refused
    it (unpaired: 388 of 200 per side)."""
    from pvt_mm.deploy.end2end.export import export_end2end
    model = tiny_two_stage('mask_rcnn_pvt_v2_b0_demo.py', 'pvtv2')
    with torch.no_grad():
        model.roi_head.bbox_head.fc_cls.weight *= 50
        model.roi_head.bbox_head.fc_cls.bias *= 50
    with pytest.warns(UserWarning, match='tie at the max_per_img cut'):
        export_end2end(model, str(tmp_path / 'saturated.onnx'),
                       shape=EXPORT_SHAPE)

