"""Whole-model ONNX export (pvt_mm.deploy) against PyTorch, with tiny models
and generated data.

Each case exports a demo config's model with a tiny backbone of one family
(PVTv1 with its position-embedding resize, PVTv2, PVTv2-Li with adaptive
pooling, CvT) at 64x64, then runs ONNX Runtime at two other sizes (one with
a batch of 2) and compares with the PyTorch model:

* the raw graph outputs (head outputs per level, FPN maps, logits) within
  the fp32 tolerance of docs/testing.md: ``1e-4`` of each output's largest
  magnitude, plus ``1e-5`` of the largest magnitude of all outputs;
* the final results from ``test_step`` (boxes, scores, labels, masks,
  segmentation maps), where a difference is allowed only where fp32
  rounding can decide it: a score tie at the cut-off or in NMS, a mask pixel
  at probability 0.5, a pixel whose two best classes tie (helpers below).

Negative controls: an export from another config is refused, a perturbed
weight fails the raw comparison by orders of magnitude, too-small images and
mismatched checkpoints raise clear errors.
"""
import os.path as osp

import pytest
import torch

from helpers import DENSE_BACKBONES as BACKBONES
from helpers import scaled_mismatches
from helpers import tiny_dense_config as tiny_config
from helpers import tiny_dense_model as tiny_model

pytest.importorskip('onnxruntime')
pytest.importorskip('onnx')
pytestmark = pytest.mark.usefixtures('fast_config_parsing', 'one_thread')

#: fp32 tolerance (docs/testing.md, "two different computations")
RTOL, ATOL_OF_MAX = 1e-4, 1e-5
EXPORT_SHAPE = (64, 64)
#: (H, W), batch: sizes not seen at export, one batch of 2
RUN_SIZES = [((96, 160), 1), ((128, 96), 2)]

def raw_batch(model, scope, shape, batch):
    from pvt_mm.analysis import fake_data
    data = fake_data(scope, shape, batch)
    return data


@pytest.fixture
def exported(tmp_path):
    """``export(config, backbone) -> (model, ORTModel, path)``."""
    from pvt_mm.deploy import ORTModel, export_onnx

    def export(name, backbone):
        model = tiny_model(name, backbone)
        path = str(tmp_path / f'{osp.splitext(name)[0]}_{backbone}.onnx')
        export_onnx(model, path, shape=EXPORT_SHAPE)
        return model, ORTModel(path, model), path
    return export


def torch_graph_outputs(model, kind, img):
    from pvt_mm.deploy import ExportGraph
    with torch.no_grad():
        return ExportGraph(model, kind)(img)


def compare_raw(model, ort_model, img):
    """Mismatching outputs (name -> error relative to the output's max)."""
    expected = torch_graph_outputs(model, ort_model.kind, img)
    got = [torch.from_numpy(a) for a in ort_model.run(img)]
    assert [tuple(e.shape) for e in expected] == [tuple(g.shape) for g in got]
    names = [f'{n}_{i}' for n, c in ort_model.groups for i in range(c)]
    return scaled_mismatches(dict(zip(names, expected)), dict(zip(names, got)),
                             RTOL, ATOL_OF_MAX)


def _iou(a, b):
    from mmdet.structures.bbox import bbox_overlaps
    return bbox_overlaps(a, b)


def assert_same_detections(ref, got, img_side, score_tol, iou_thr=0.5):
    """Each detection of one side has a twin on the other (same label,
    score within ``score_tol``, box within 1e-3 of the image side), except
    detections fp32 rounding may drop or keep: a score within ``score_tol``
    of the lowest kept one (the cut-off), or of an overlapping detection of
    the same class (an NMS tie)."""
    box_tol = 1e-3 * img_side
    for a, b in ((ref, got), (got, ref)):
        if len(a.scores) == 0:
            continue
        if len(b.scores):
            near = ((a.bboxes[:, None] - b.bboxes[None]).abs().amax(-1)
                    <= box_tol)
            near &= a.labels[:, None] == b.labels[None]
            near &= (a.scores[:, None] - b.scores[None]).abs() <= score_tol
            twin = near.any(1)
        else:
            twin = torch.zeros(len(a.scores), dtype=torch.bool)
        cutoff = min(a.scores.min(), b.scores.min() if len(b.scores) else 1.)
        at_cutoff = (a.scores - cutoff).abs() <= score_tol
        ious = _iou(a.bboxes, a.bboxes)
        same = a.labels[:, None] == a.labels[None]
        close = (a.scores[:, None] - a.scores[None]).abs() <= score_tol
        tie = ((ious > iou_thr) & same & close).sum(1) > 1
        unexplained = ~(twin | at_cutoff | tie)
        assert not unexplained.any(), (
            f'{int(unexplained.sum())} of {len(a.scores)} detections have no '
            f'twin: {a.bboxes[unexplained][:3]} {a.scores[unexplained][:3]}')
        # near-ties are rare: most detections must have twins
        assert twin.float().mean() >= 0.9


def assert_same_masks(ref, got, mask_tol):
    """Matched instances (by box) have the same masks except pixels whose
    probability is within rounding of 0.5 (at most 1% of a mask's area)."""
    if len(ref.scores) == 0 or len(got.scores) == 0:
        return
    d = (ref.bboxes[:, None] - got.bboxes[None]).abs().amax(-1)
    for i in range(len(ref.scores)):
        j = int(d[i].argmin())
        if d[i, j] > 1e-1:
            continue
        differ = (ref.masks[i] != got.masks[j]).sum().item()
        area = max(int(ref.masks[i].sum()), 1)
        assert differ <= max(2, 0.01 * area), (i, differ, area)


def run_both(model, ort_model, scope, shape, batch, label=''):
    """The raw outputs of PyTorch and ONNX Runtime agree on a batch of
    ``shape``; then both models' ``test_step`` results for it."""
    data = model.data_preprocessor(raw_batch(model, scope, shape, batch),
                                   False)
    assert compare_raw(model, ort_model, data['inputs']) == {}, label
    with torch.no_grad():
        ref = model.test_step(raw_batch(model, scope, shape, batch))
    got = ort_model.test_step(raw_batch(model, scope, shape, batch))
    assert len(ref) == len(got) == batch
    return ref, got


def test_single_stage_all_backbones(exported):
    """RetinaNet with each backbone family: raw head outputs and final
    detections at two sizes not seen at export."""
    for backbone in BACKBONES:
        model, ort_model, _ = exported('retinanet_pvt_v2_b0_demo.py', backbone)
        assert ort_model.kind == 'single_stage'
        for shape, batch in RUN_SIZES:
            ref, got = run_both(model, ort_model, 'mmdet', shape, batch,
                                  backbone)
            for r, g in zip(ref, got):
                assert len(r.pred_instances) > 0
                assert_same_detections(r.pred_instances, g.pred_instances,
                                       max(shape), score_tol=1e-4)


@pytest.mark.parametrize('name,backbone', [
    ('gfl_pvt_v2_b0_demo.py', 'pvtv2_li'),
    ('mask_rcnn_pvt_v2_b0_demo.py', 'pvtv1'),
    ('mask_rcnn_pvt_v2_b0_demo.py', 'cvt'),
])
def test_other_detectors(exported, name, backbone):
    model, ort_model, _ = exported(name, backbone)
    for shape, batch in RUN_SIZES:
        ref, got = run_both(model, ort_model, 'mmdet', shape, batch)
        for r, g in zip(ref, got):
            assert len(r.pred_instances) > 0
            assert_same_detections(r.pred_instances, g.pred_instances,
                                   max(shape), score_tol=1e-4)
            if 'masks' in r.pred_instances:
                assert_same_masks(r.pred_instances, g.pred_instances, 1e-4)


@pytest.mark.parametrize('backbone', list(BACKBONES))
def test_semantic_fpn(exported, backbone):
    model, ort_model, _ = exported('sem_fpn_pvt_v2_b0_demo.py', backbone)
    assert ort_model.kind == 'segmentor'
    for shape, batch in RUN_SIZES:
        ref, got = run_both(model, ort_model, 'mmseg', shape, batch)
        for r, g in zip(ref, got):
            a, b = r.pred_sem_seg.data, g.pred_sem_seg.data
            assert a.shape == b.shape == (1, *shape)
            differ = a != b
            if differ.any():
                # only where the two best classes tie within rounding
                top2 = r.seg_logits.data.topk(2, dim=0).values
                gap = (top2[0] - top2[1])[differ[0]]
                scale = r.seg_logits.data.abs().max()
                assert (gap <= 2 * RTOL * scale).all()


def test_negative_controls(exported, tmp_path):
    from pvt_mm.deploy import (ExportMismatchError, InputSizeError, ORTModel,
                               load_model)
    model, ort_model, path = exported('retinanet_pvt_v2_b0_demo.py', 'pvtv2')
    data = model.data_preprocessor(raw_batch(model, 'mmdet', (96, 96), 1),
                                   False)
    # one weight tensor perturbed by 1% noise: the comparison flags the
    # outputs, far beyond the tolerance
    with torch.no_grad():
        w = model.backbone.stages[0].patch_embed.proj.weight
        w.add_(0.01 * w.std() * torch.randn(w.shape))
    bad = compare_raw(model, ort_model, data['inputs'])
    assert len(bad) == sum(n for _, n in ort_model.groups)  # every output
    assert sorted(bad.values())[len(bad) // 2] > 10 * RTOL  # median
    # an export from another config (backbone) is refused
    other = tiny_model('retinanet_pvt_v2_b0_demo.py', 'cvt')
    with pytest.raises(ExportMismatchError, match='exported from config'):
        ORTModel(path, other)
    # an image too small for the backbone's deepest stage
    with pytest.raises(InputSizeError, match='cannot take a 16x64 input'):
        ort_model.run(torch.zeros(1, 3, 16, 64))
    # a checkpoint of another config
    ckpt = str(tmp_path / 'other.pth')
    torch.save(dict(state_dict=other.state_dict(), meta={}), ckpt)
    from pvt_mm.deploy import CheckpointMismatchError
    with pytest.raises(CheckpointMismatchError, match='does not match config'):
        load_model(tiny_config('retinanet_pvt_v2_b0_demo.py', 'pvtv2'), ckpt)


def test_export_verification_catches_sizes_baked_into_the_graph(
        tmp_path, monkeypatch):
    """mmseg's Upsample computes its output size with int(): traced as is,
    the graph only works at the export size. The exporter's check at a
    second size catches that (and the fix in traceable_upsampling makes it
    pass, test_semantic_fpn)."""
    import contextlib

    from pvt_mm.deploy import ExportError, export_onnx
    from pvt_mm.deploy import onnx_export
    model = tiny_model('sem_fpn_pvt_v2_b0_demo.py', 'pvtv2')
    monkeypatch.setattr(onnx_export, 'traceable_upsampling',
                        lambda m: contextlib.nullcontext())
    with pytest.raises(ExportError, match='records a size of the export'):
        export_onnx(model, str(tmp_path / 'baked.onnx'), shape=EXPORT_SHAPE)
