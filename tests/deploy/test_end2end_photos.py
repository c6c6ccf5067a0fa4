"""End-to-end files on real photographs at the real test size, through the
torch-free runtime, against the PyTorch model on the config's own test
pipeline. ``slow``.

The other end-to-end tests feed random pixels to the graph at small sizes.
Here the inputs are photographs (scikit-image's sample images: astronaut,
coffee, chelsea, rocket, the Hubble deep field), written to files, and the
configs get the real test resize: ``Resize(scale=(1333, 800))`` for the
detectors, ``(2048, 512)`` for Semantic FPN, so the graphs run at 512 to
1333 pixels a side. Each model (RetinaNet and Semantic FPN with a tiny
backbone of each family, Mask R-CNN with PVTv2 and CvT; random heads spread
by ``spread_weights``) is exported at the exporter's default size and then:

* the file runs through :class:`pvt_mm.runtime.End2EndModel`, which reads
  the photograph, resizes it as mmcv does and feeds the graph;
* the PyTorch model runs ``test_step`` on the same file through the
  config's test pipeline (MMDetection's / MMSegmentation's ``Compose`` of
  ``LoadImageFromFile``, ``Resize``, ``Pack*Inputs``).

Boxes, scores and labels must agree within the fp32 tolerance of
docs/testing.md (score within 1e-4, box within 1e-3 of the original
image's longer side), every detection paired with a twin except those fp32
rounding decides (at the score cut-off / ``max_per_img`` or in an NMS tie),
which are counted and must be few; masks of paired detections only at
pixels whose probability is 0.5 within rounding (:func:`compare_masks`);
label maps only where the two best logits tie within fp32 rounding (at most
1% of the pixels).

Photographs have flat regions, where neighbouring anchors see identical
features and score exactly the same; mmcv and the graph order equal scores
differently, so Mask R-CNN's RPN may keep different proposals of such a
group, and a proposal only one side has becomes a detection only one side
has. Mask R-CNN is therefore checked stage by stage: the graph's proposals
against mmdet's RPN (equal but for such counted ties), the runtime's
detections against mmdet's RoI head run on the graph's proposals (no
exception), and against the whole ``test_step`` (a few detections let off,
only when the RPN had ties).

Each test prints what it measured (``-s``). Negative controls: 1% noise on
one weight of the PyTorch model after export fails the comparisons. About
1.5 minutes on 2 CPU cores.
"""
import contextlib

import numpy as np
import pytest
import torch

from helpers import spread_weights, tiny_dense_config

pytest.importorskip('onnxruntime')
skimage_data = pytest.importorskip('skimage.data')
cv2 = pytest.importorskip('cv2')
pytestmark = [pytest.mark.slow,
              pytest.mark.usefixtures('fast_config_parsing', 'one_thread')]

#: fp32 tolerances of docs/testing.md (final results)
SCORE_TOL, BOX_TOL_OF_SIDE, RTOL = 1e-4, 1e-3, 1e-4
#: at most this fraction of the detections / pixels may differ at ties
TIE_FRACTION = 0.01
#: mask pixels of twins may differ where mmdet's pasted probability is
#: within MASK_PROB_TOL of the 0.5 cut, plus what the twins' box difference
#: explains (MASK_CELLS: FCNMaskHead's 28 x 28 grid; :func:`compare_masks`)
MASK_PROB_TOL, MASK_CELLS = 1e-4, 28
#: the real configs' test resizes
DET_SCALE, SEG_SCALE = (1333, 800), (2048, 512)
#: the photographs (scikit-image's names) and the file each is written to
PHOTOS = {'astronaut': 'astronaut.jpg', 'coffee': 'coffee.png',
          'chelsea': 'chelsea.jpg', 'rocket': 'rocket.jpg',
          'hubble_deep_field': 'hubble.jpg'}


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    """name -> path of the photograph written as a BGR file (as a user's
    image would be on disk)."""
    folder = tmp_path_factory.mktemp('photos')
    paths = {}
    for name, file in PHOTOS.items():
        rgb = getattr(skimage_data, name)()
        assert rgb.ndim == 3 and rgb.dtype == np.uint8, name
        path = str(folder / file)
        assert cv2.imwrite(path, np.ascontiguousarray(rgb[..., ::-1]),
                           [cv2.IMWRITE_JPEG_QUALITY, 95])
        paths[name] = path
    return paths


# ------------------------------------------------------------- models
def with_test_scale(cfg, scale):
    """``cfg`` with its test pipeline's ``Resize`` at ``scale``."""
    for loader in ('val_dataloader', 'test_dataloader'):
        for step in cfg[loader].dataset.pipeline:
            if step['type'].split('.')[-1] == 'Resize':
                step['scale'] = tuple(scale)
    return cfg


def tiny_model(config, backbone, scale):
    """A tiny model of the demo ``config`` (random weights, heads spread)
    whose test pipeline resizes to ``scale``; ``model.cfg`` is its
    config."""
    from pvt_mm.deploy import load_model
    cfg = with_test_scale(tiny_dense_config(config, backbone), scale)
    return spread_weights(load_model(cfg)).eval()


def export(model, folder, name):
    """The end-to-end file of ``model``, traced at the exporter's default
    size (800 x 1333); the runtime's results are compared with PyTorch
    below, so the exporter's own ONNX Runtime check is skipped."""
    from pvt_mm.deploy.end2end.export import export_end2end
    path = str(folder / f'{name}.onnx')
    meta = export_end2end(model, path, verify=False)
    assert meta['end2end'] == '1'
    return path


def torch_predict(model, path, scope):
    """``model.test_step`` on the file at ``path`` through the config's test
    pipeline (without ``LoadAnnotations``: a photograph has none)."""
    from mmcv.transforms import Compose
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import DefaultScope
    steps = [s for s in model.cfg.test_dataloader.dataset.pipeline
             if s['type'].split('.')[-1] != 'LoadAnnotations']
    with DefaultScope.overwrite_default_scope(scope):
        data = Compose(steps)(dict(img_path=path, img_id=0))
    with torch.no_grad():
        return model.test_step(pseudo_collate([data]))[0]


def runtime_predict(onnx_path, path):
    """The runtime's result for the file at ``path`` and the size it fed
    the graph."""
    from pvt_mm.runtime import End2EndModel, read_image
    model = End2EndModel(onnx_path, num_threads=torch.get_num_threads(),
                         precision='fp32')
    hw = read_image(path).shape[:2]
    return model(path), model.input_size(hw)


# -------------------------------------------------------- comparisons
def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``(n, 4)`` and ``(m, 4)`` boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None] - inter,
                              1e-9)


def pair_detections(ref, got, side):
    """Pair each detection of ``ref`` (best first) with the unused one of
    ``got`` of the same label, score within :data:`SCORE_TOL` and box within
    :data:`BOX_TOL_OF_SIDE` x ``side`` that is nearest; ``ref`` / ``got``:
    ``(boxes, scores, labels)`` numpy arrays. Returns the pairs."""
    boxes_r, scores_r, labels_r = ref
    boxes_g, scores_g, labels_g = got
    box_tol = BOX_TOL_OF_SIDE * side
    used = np.zeros(len(scores_g), dtype=bool)
    pairs = []
    for i in range(len(scores_r)):
        if not len(scores_g):
            break
        d = np.abs(boxes_g - boxes_r[i]).max(1)
        ok = (~used & (labels_g == labels_r[i]) & (d <= box_tol)
              & (np.abs(scores_g - scores_r[i]) <= SCORE_TOL))
        if ok.any():
            j = int(np.flatnonzero(ok)[np.argmin(d[ok])])
            used[j] = True
            pairs.append((i, j))
    return pairs


def explained_by_ties(mine, other, lone, iou_thr):
    """Which detections of ``lone`` (indices into ``mine``, without a twin
    in ``other``) fp32 rounding can explain: a score within
    :data:`SCORE_TOL` of the lowest one kept on either side (the score
    threshold or ``max_per_img`` cut), or a detection of the same class on
    either side that overlaps it (IoU above the NMS threshold) with a score
    within :data:`SCORE_TOL` (the two swapped places in NMS)."""
    boxes, scores, labels = mine
    o_boxes, o_scores, o_labels = other
    cutoff = min(scores.min(), o_scores.min() if len(o_scores) else 1.)
    ok = []
    for i in lone:
        if abs(scores[i] - cutoff) <= SCORE_TOL:
            ok.append(True)
            continue
        tie = False
        for b, s, lab, own in ((boxes, scores, labels, True),
                               (o_boxes, o_scores, o_labels, False)):
            if not len(s):
                continue
            near = ((lab == labels[i]) & (np.abs(s - scores[i]) <= SCORE_TOL)
                    & (_iou(boxes[i:i + 1], b)[0] > iou_thr))
            if own:
                near[i] = False
            tie |= bool(near.any())
        ok.append(tie)
    return np.asarray(ok, dtype=bool)


def compare_detections(ref_instances, dets, side, iou_thr,
                       allowed: int = 0):
    """mmdet's ``pred_instances`` against the runtime's
    :class:`~pvt_mm.runtime.Detections`; asserts the rule of the module
    docstring, with ``allowed`` detections let off it (differences that an
    earlier stage's counted ties explain), and returns what was
    measured."""
    ref = (ref_instances.bboxes.numpy(), ref_instances.scores.numpy(),
           ref_instances.labels.numpy())
    got = (dets.boxes, dets.scores, dets.labels)
    assert len(ref[1]) > 0, 'no detections at all: nothing is compared'
    pairs = pair_detections(ref, got, side)
    lone_ref = sorted(set(range(len(ref[1]))) - {i for i, _ in pairs})
    lone_got = sorted(set(range(len(got[1]))) - {j for _, j in pairs})
    unexplained = 0
    for mine, other, lone, which in ((ref, got, lone_ref, 'PyTorch'),
                                     (got, ref, lone_got, 'runtime')):
        ok = explained_by_ties(mine, other, lone, iou_thr)
        unexplained += int((~ok).sum())
        assert unexplained <= allowed, (
            f'{int((~ok).sum())} {which} detections have no twin and are '
            f'no tie: boxes {mine[0][lone][~ok][:3]}, scores '
            f'{mine[1][lone][~ok][:3]}, labels {mine[2][lone][~ok][:3]}')
    ties = len(lone_ref) + len(lone_got) - unexplained
    total = max(len(ref[1]), len(got[1]))
    assert ties <= max(2, TIE_FRACTION * total), (ties, total)
    i, j = (np.asarray(x) for x in zip(*pairs))
    stats = dict(
        ref=len(ref[1]), got=len(got[1]), pairs=len(pairs),
        ties=ties, max_score_err=float(np.abs(ref[1][i] - got[1][j]).max()),
        max_box_err=float(np.abs(ref[0][i] - got[0][j]).max()),
        box_tol=BOX_TOL_OF_SIDE * side)
    if allowed:
        stats['let_off'] = unexplained
    if ref_instances.get('masks') is not None:
        stats.update(compare_masks(ref_instances, dets, pairs))
    return stats


def rpn_parity(model, image, rpn_cfg, monkeypatch):
    """The end-to-end module's RPN (eager, as traced) against mmdet's
    ``RPNHead.predict`` on the same features of the resized ``image``
    (``(1, 3, H, W)`` uint8). Proposals are paired by box (both decode the
    same anchors with the same code: equal to the bit); one without a twin
    must be a tie: its score exactly that of another candidate (identical
    neighbourhoods in a flat region of a photograph give identical
    features, and mmcv and the graph order equal scores differently, so
    NMS keeps different ones of them), at the ``max_per_img`` cut, or a
    consequence of one (it overlaps, above the NMS threshold, a proposal
    without a twin on the other side scored at least as high). Returns the
    features, the module's proposals and what was measured."""
    import pvt_mm.deploy.end2end.nms as nms
    from mmdet.structures import DetDataSample

    from pvt_mm.deploy.end2end import build_end2end
    module = build_end2end(model).eval()
    seen = {}
    original = nms.batched_nms

    def spy(boxes, scores, *args, **kwargs):
        keep, valid = original(boxes, scores, *args, **kwargs)
        seen.update(scores=scores[0], keep=keep[0][valid[0]],
                    boxes=boxes[0])
        return keep, valid
    monkeypatch.setattr(nms, 'batched_nms', spy)
    h, w = image.shape[-2:]
    sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                         scale_factor=(1., 1.)))
    with torch.no_grad():
        feats = model.extract_feat(module.preprocess(image))
        ref = model.rpn_head.predict(feats, [sample], rescale=False)[0]
        module.rpn(feats, torch.tensor([h, w]))
    monkeypatch.setattr(nms, 'batched_nms', original)
    candidates = seen['scores'].numpy()
    sides = [(ref.bboxes.numpy(), ref.scores.numpy()),
             (seen['boxes'][seen['keep']].numpy(),
              candidates[seen['keep'].numpy()])]
    a, b = sides
    same = (np.abs(a[0][:, None] - b[0][None]).max(-1) == 0) & (
        a[1][:, None] == b[1][None])
    twin = [same.any(1), same.any(0)]
    iou_thr, cap = rpn_cfg.nms.iou_threshold, rpn_cfg.max_per_img
    explained = []
    for k, (boxes, scores) in enumerate(sides):
        other = sides[1 - k][1]
        tied = np.array([(candidates == x).sum() > 1 for x in scores])
        cut = scores <= (other.min() + SCORE_TOL if len(other) >= cap
                         else scores.min())
        explained.append(twin[k] | tied | cut)
    overlap = _iou(a[0], b[0]) > iou_thr
    while True:  # consequences, until nothing changes
        lone_b = ~twin[1] & explained[1]
        lone_a = ~twin[0] & explained[0]
        grown = [explained[0] | (overlap & lone_b[None]
                                 & (b[1][None] >= a[1][:, None] - SCORE_TOL)
                                 ).any(1),
                 explained[1] | (overlap & lone_a[:, None]
                                 & (a[1][:, None] >= b[1][None] - SCORE_TOL)
                                 ).any(0)]
        if all((g == e).all() for g, e in zip(grown, explained)):
            break
        explained = grown
    for k, which in enumerate(('mmdet', 'graph')):
        bad = ~explained[k]
        assert not bad.any(), (
            f'{int(bad.sum())} {which} proposals have no twin and are no '
            f'tie: {sides[k][0][bad][:3]}, scores {sides[k][1][bad][:3]}')
    lone = int((~twin[0]).sum() + (~twin[1]).sum())
    assert lone <= max(2, TIE_FRACTION * len(a[1])), lone
    return feats, sides[1][0], dict(proposals=len(a[1]), rpn_ties=lone)


def compare_masks(ref, got, pairs):
    """Masks of paired detections (``ref``: mmdet's instances with
    ``probs``, the probabilities it cut at 0.5; ``got``: the runtime's
    Detections) may differ only at pixels whose probability is within
    :data:`MASK_PROB_TOL` of 0.5 plus ``MASK_CELLS * d / min(w, h)``: the
    twins' boxes differ by ``d`` (fp32), which moves the points where the
    28 x 28 mask is sampled by up to that many cells, and the pasted
    probability changes by at most 1 per cell between them. Returns the
    differing pixels, the mask pixels compared and the largest share of its
    allowance a difference used."""
    assert got.masks is not None and got.masks.shape[1:] == \
        ref.masks.shape[1:], (None if got.masks is None
                              else got.masks.shape, ref.masks.shape)
    masks, probs = ref.masks.numpy(), ref.probs
    boxes_r, boxes_g = ref.bboxes.numpy(), got.boxes
    bad = area = 0
    used = 0.
    for i, j in pairs:
        differ = masks[i] != got.masks[j]
        area += int(masks[i].sum())
        if not differ.any():
            continue
        d = float(np.abs(boxes_r[i] - boxes_g[j]).max())
        side = float(max((boxes_r[i, 2:] - boxes_r[i, :2]).min(), 1e-6))
        allowed = MASK_PROB_TOL + MASK_CELLS * d / side
        gap = float(np.abs(probs[i][differ] - 0.5).max())
        assert gap <= allowed, (
            f'detection {i}: {int(differ.sum())} mask pixels differ, one '
            f'of probability {0.5 + gap:.5f} or {0.5 - gap:.5f} (allowed '
            f'0.5 +- {allowed:.3g})')
        bad += int(differ.sum())
        used = max(used, gap / allowed)
    return dict(mask_pixels_differ=bad, mask_area=area,
                mask_allowance_used=used)


@contextlib.contextmanager
def recording_pastes(monkeypatch):
    """Records mmdet's pasted mask probabilities (``_do_paste_mask``'s
    results, before the 0.5 cut) while mmdet predicts; :func:`with_probs`
    attaches them to its results."""
    import mmdet.models.roi_heads.mask_heads.fcn_mask_head as fcn
    calls, original = [], fcn._do_paste_mask

    def record(*args, **kwargs):
        out = original(*args, **kwargs)
        calls.append(out)
        return out
    monkeypatch.setattr(fcn, '_do_paste_mask', record)
    try:
        yield calls
    finally:
        monkeypatch.setattr(fcn, '_do_paste_mask', original)


def with_probs(instances, calls):
    """``instances`` with ``probs`` ``(n, h, w)``: on the CPU mmdet pastes
    one mask per call, into the box's region of the image."""
    instances.probs = np.zeros(tuple(instances.masks.shape), np.float32)
    assert len(calls) == len(instances), (len(calls), len(instances))
    for k, (probs, region) in enumerate(calls):
        instances.probs[(k, ) + tuple(region)] = probs[0].numpy()
    calls.clear()
    return instances


def centre_mask_logits(model):
    """Shift the mask head's class logits to mean 0 on a few boxes of a
    random image: the random head then gives masks of about half their box
    (left as they are, most masks are empty and nothing is compared)."""
    from mmdet.structures.bbox import bbox2roi
    head = model.roi_head
    image = torch.rand(1, 3, 128, 128,
                       generator=torch.Generator().manual_seed(2))
    boxes = torch.tensor([[4., 4., 60., 70.], [20., 10., 120., 50.],
                          [0., 30., 40., 128.], [30., 30., 90., 100.]])
    with torch.no_grad():
        feats = model.extract_feat(image)
        extractor = head.mask_roi_extractor
        logits = head.mask_head(extractor(feats[:extractor.num_inputs],
                                          bbox2roi([boxes])))
        head.mask_head.conv_logits.bias -= logits.mean(dim=(0, 2, 3))
    return model


def compare_label_maps(ref_sample, label_map):
    """mmseg's ``pred_sem_seg`` against the runtime's label map: equal but
    for pixels whose two best logits are within twice the fp32 tolerance
    (at most 1%); returns what was measured."""
    ref = ref_sample.pred_sem_seg.data[0].numpy()
    assert ref.shape == label_map.shape, (ref.shape, label_map.shape)
    differ = ref != label_map
    logits = ref_sample.seg_logits.data
    scale = float(logits.abs().max())
    gap = np.zeros(0)
    if differ.any():
        top2 = logits.topk(2, dim=0).values
        gap = (top2[0] - top2[1]).numpy()[differ]
        not_ties = int((gap > 2 * RTOL * scale).sum())
        assert not_ties == 0, (
            f'{int(differ.sum())} pixels differ, {not_ties} of them not ties '
            f'(largest top-2 gap {gap.max():.3g}, logit scale {scale:.3g})')
    assert differ.mean() <= TIE_FRACTION, differ.mean()
    # a real map, not one class everywhere
    assert len(np.unique(ref)) > 1
    return dict(pixels=int(ref.size), differ=int(differ.sum()),
                max_tied_gap_of_scale=float(gap.max() / scale) if gap.size
                else 0.0, classes=len(np.unique(ref)))


def report(what, stats):
    print(f'\n[photos] {what}: ' + ', '.join(
        f'{k}={v:.3g}' if isinstance(v, float) else f'{k}={v}'
        for k, v in stats.items()))


# --------------------------------------------------------------- tests
@pytest.mark.parametrize('backbone,photo', [
    ('pvtv1', 'astronaut'),
    ('pvtv2', 'coffee'),
    ('pvtv2_li', 'rocket'),
    ('cvt', 'chelsea'),
])
def test_retinanet_on_photos(tmp_path, photos, backbone, photo):
    model = tiny_model('retinanet_pvt_v2_b0_demo.py', backbone, DET_SCALE)
    onnx_path = export(model, tmp_path, f'retinanet_{backbone}')
    path = photos[photo]
    ref = torch_predict(model, path, 'mmdet')
    dets, fed = runtime_predict(onnx_path, path)
    # the runtime fed the graph what the pipeline made of the photograph
    assert tuple(fed) == tuple(ref.img_shape)
    assert max(fed) == DET_SCALE[0] or min(fed) == DET_SCALE[1]
    side = max(ref.ori_shape)
    stats = compare_detections(ref.pred_instances, dets, side,
                               model.bbox_head.test_cfg.nms.iou_threshold)
    report(f'RetinaNet {backbone} on {photo} {ref.ori_shape} -> {fed}',
           stats)


@pytest.mark.parametrize('backbone,photo', [
    ('pvtv2', 'astronaut'),
    ('cvt', 'coffee'),
])
def test_mask_rcnn_on_photos(tmp_path, photos, monkeypatch, backbone,
                             photo):
    """Two stages, two references. The RPN: the graph's proposals against
    mmdet's, equal but for counted ties (:func:`rpn_parity`). The RoI
    stage: the runtime's boxes and masks against mmdet's ``roi_head``
    run on the graph's proposals (the rule of the module docstring, no
    exception), and against mmdet's whole ``test_step``, where a
    detection may be without twin only if the RPN had ties (a proposal
    only one side has is a detection only one side has)."""
    from mmengine.structures import InstanceData

    from pvt_mm.runtime import End2EndModel
    model = centre_mask_logits(
        tiny_model('mask_rcnn_pvt_v2_b0_demo.py', backbone, DET_SCALE))
    onnx_path = export(model, tmp_path, f'mask_rcnn_{backbone}')
    path = photos[photo]
    with recording_pastes(monkeypatch) as pastes:
        ref = torch_predict(model, path, 'mmdet')
        with_probs(ref.pred_instances, pastes)
    dets, fed = runtime_predict(onnx_path, path)
    assert tuple(fed) == tuple(ref.img_shape)
    assert dets.masks is not None
    side, cfg = max(ref.ori_shape), model.test_cfg
    resized, _ = End2EndModel(onnx_path).prepare(path)
    image = torch.from_numpy(resized).permute(2, 0, 1)[None].contiguous()
    feats, proposals, stats = rpn_parity(model, image, cfg.rpn, monkeypatch)
    with recording_pastes(monkeypatch) as pastes, torch.no_grad():
        on_graph_proposals = with_probs(model.roi_head.predict(
            feats, [InstanceData(bboxes=torch.from_numpy(proposals))],
            [ref], rescale=True)[0], pastes)
    stats.update(compare_detections(on_graph_proposals, dets, side,
                                    cfg.rcnn.nms.iou_threshold))
    report(f'Mask R-CNN {backbone} on {photo} {ref.ori_shape} -> {fed}, '
           f'RoI stage on the graph\'s proposals', stats)
    whole = compare_detections(
        ref.pred_instances, dets, side, cfg.rcnn.nms.iou_threshold,
        allowed=max(2, int(TIE_FRACTION * len(dets))) if stats['rpn_ties']
        else 0)
    report(f'Mask R-CNN {backbone} on {photo}, against test_step', whole)


@pytest.mark.parametrize('backbone,photos_', [
    ('pvtv1', ('rocket', )),
    ('pvtv2', ('coffee', 'hubble_deep_field')),
    ('pvtv2_li', ('astronaut', )),
    ('cvt', ('chelsea', )),
])
def test_semantic_fpn_on_photos(tmp_path, photos, backbone, photos_):
    model = tiny_model('sem_fpn_pvt_v2_b0_demo.py', backbone, SEG_SCALE)
    onnx_path = export(model, tmp_path, f'sem_fpn_{backbone}')
    for photo in photos_:
        path = photos[photo]
        ref = torch_predict(model, path, 'mmseg')
        seg, fed = runtime_predict(onnx_path, path)
        assert tuple(fed) == tuple(ref.img_shape)
        stats = compare_label_maps(ref, seg.label_map)
        report(f'Semantic FPN {backbone} on {photo} {ref.ori_shape} -> '
               f'{fed}', stats)


def test_comparisons_are_not_blind(tmp_path, photos):
    """Negative controls: after export, 1% noise on one backbone weight of
    the PyTorch RetinaNet, or on Semantic FPN's classifier, and the
    comparisons above fail on the same photograph."""
    gen = torch.Generator().manual_seed(3)

    def perturb(w, amount):
        with torch.no_grad():
            w.add_(amount * w.std() * torch.randn(w.shape, generator=gen))

    path = photos['coffee']
    model = tiny_model('retinanet_pvt_v2_b0_demo.py', 'pvtv2', DET_SCALE)
    onnx_path = export(model, tmp_path, 'retinanet')
    dets, _ = runtime_predict(onnx_path, path)
    perturb(model.backbone.stages[0].patch_embed.proj.weight, 0.01)
    ref = torch_predict(model, path, 'mmdet')
    with pytest.raises(AssertionError, match='have no twin'):
        compare_detections(ref.pred_instances, dets, max(ref.ori_shape),
                           0.5)

    model = tiny_model('sem_fpn_pvt_v2_b0_demo.py', 'pvtv2', SEG_SCALE)
    onnx_path = export(model, tmp_path, 'sem_fpn')
    seg, _ = runtime_predict(onnx_path, path)
    perturb(model.decode_head.conv_seg.weight, 0.01)
    ref = torch_predict(model, path, 'mmseg')
    with pytest.raises(AssertionError, match='not ties'):
        compare_label_maps(ref, seg.label_map)


def test_mask_comparison_is_not_blind(tmp_path, photos, monkeypatch):
    """Negative control of the mask rule: 1% noise on Mask R-CNN's mask
    classifier after export changes the masks beyond it (boxes and scores
    still pair)."""
    model = centre_mask_logits(tiny_model('mask_rcnn_pvt_v2_b0_demo.py',
                                          'pvtv2', DET_SCALE))
    onnx_path = export(model, tmp_path, 'mask_rcnn')
    path = photos['coffee']
    dets, _ = runtime_predict(onnx_path, path)
    w = model.roi_head.mask_head.conv_logits.weight
    with torch.no_grad():
        w.add_(0.01 * w.std() * torch.randn(
            w.shape, generator=torch.Generator().manual_seed(4)))
    with recording_pastes(monkeypatch) as pastes:
        ref = torch_predict(model, path, 'mmdet')
        with_probs(ref.pred_instances, pastes)
    with pytest.raises(AssertionError, match='mask pixels differ'):
        compare_detections(ref.pred_instances, dets, max(ref.ori_shape),
                           model.test_cfg.rcnn.nms.iou_threshold)
