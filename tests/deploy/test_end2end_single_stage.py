"""End-to-end ONNX graphs of single-stage detectors (pvt_mm.deploy.end2end:
image and ori_shape in, final detections out, NMS in the graph) and the
NMS they are built on, against mmdet / mmcv.

Each detector (RetinaNet, ATSS, GFL demo configs, tiny backbones of three
families) is exported at 64x64 and run in ONNX Runtime at sizes not seen at
export: a batch of 2 at 100x150 (not a multiple of the padding divisor)
from a 200x300 original, and 128x96 from a 171x128 original, so priors,
padding, clipping and rescaling all take graph values. The reference is
the PyTorch model's ``test_step`` (mmdet's own post-processing,
``rescale=True``) on the same resized image with the metainfo mmdet's
pipeline gives it. Detections must match as in docs/testing.md: every
box / label / score has a twin (score within 1e-4, box within 1e-3 of the
original image's side) except at the score cut-off or in an NMS tie.
"""
import os.path as osp

import numpy as np
import pytest
import torch

from helpers import tiny_dense_model

pytest.importorskip('onnxruntime')
pytest.importorskip('onnx')
pytestmark = pytest.mark.usefixtures('fast_config_parsing', 'one_thread')

EXPORT_SHAPE = (64, 64)
#: image (H, W), batch, ori_shape: sizes not seen at export
RUNS = [((100, 150), 2, (200, 300)), ((128, 96), 1, (171, 128))]
SCORE_TOL = 1e-4  # docs/testing.md, final results


# ------------------------------------------------------------- helpers
def images(shape, batch, dtype=torch.uint8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, *shape), generator=g,
                         dtype=torch.uint8).to(dtype)


def mmdet_predict(model, image, ori_shape):
    """``model.test_step`` on a resized (not padded) batch with the
    metainfo mmdet's test pipeline records for it."""
    from mmdet.structures import DetDataSample
    b, _, h, w = image.shape
    oh, ow = ori_shape
    samples = []
    for _ in range(b):
        s = DetDataSample()
        s.set_metainfo(dict(img_shape=(h, w), ori_shape=(oh, ow),
                            scale_factor=(w / ow, h / oh)))
        samples.append(s)
    with torch.no_grad():
        out = model.test_step(dict(inputs=list(image.to(torch.uint8)),
                                   data_samples=samples))
    # the data preprocessor recorded the padded batch's shape
    assert out[0].batch_input_shape == (-(-h // 32) * 32, -(-w // 32) * 32)
    return [o.pred_instances for o in out]


def as_instances(dets, scores, labels, num_dets):
    """The contract's padded outputs -> one InstanceData per image."""
    from mmengine.structures import InstanceData
    out = []
    for b in range(len(num_dets)):
        n = int(num_dets[b])
        # padding rows: boxes and scores 0, label -1
        assert (np.asarray(labels[b][n:]) == -1).all()
        assert not np.asarray(scores[b][n:]).any()
        assert not np.asarray(dets[b][n:]).any()
        out.append(InstanceData(
            bboxes=torch.as_tensor(np.asarray(dets[b][:n])),
            scores=torch.as_tensor(np.asarray(scores[b][:n])),
            labels=torch.as_tensor(np.asarray(labels[b][:n]))))
    return out


def assert_same(ref, got, side, score_tol=SCORE_TOL):
    from test_deploy_onnx import assert_same_detections
    assert len(ref) == len(got)
    for r, g in zip(ref, got):
        assert len(r.scores) > 0
        assert_same_detections(r, g, side, score_tol)


def run_ort(session, image, ori_shape):
    ori = np.array([ori_shape] * len(image), dtype=np.int64)
    return session.run(None, {'image': image.numpy(), 'ori_shape': ori})


def session_of(path):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(path, options,
                                providers=['CPUExecutionProvider'])


# ------------------------------------------------------------ detectors
@pytest.mark.parametrize('name,backbone,dtype', [
    ('retinanet_pvt_v2_b0_demo.py', 'pvtv2', 'uint8'),
    ('atss_pvt_v2_b0_demo.py', 'cvt', 'uint8'),
    ('gfl_pvt_v2_b0_demo.py', 'pvtv1', 'float32'),
])
def test_end2end_matches_predict(tmp_path, name, backbone, dtype):
    import json

    import onnx

    from pvt_mm.deploy.end2end import build_end2end
    from pvt_mm.deploy.end2end.export import export_end2end
    from pvt_mm.deploy.end2end.single_stage import SingleStageEnd2End
    model = tiny_dense_model(name, backbone)
    path = str(tmp_path / f'{osp.splitext(name)[0]}.onnx')
    meta = export_end2end(model, path, shape=EXPORT_SHAPE, input_dtype=dtype,
                          verify=False)
    assert meta['end2end'] == '1'
    assert json.loads(meta['outputs']) == [
        'dets', 'scores', 'labels', 'num_dets']
    assert json.loads(meta['input'])['dtype'] == dtype
    # standard ONNX operators only, NMS in the graph
    graph = onnx.load(path).graph
    assert {n.domain for n in graph.node} <= {'', 'ai.onnx'}
    assert 'NonMaxSuppression' in {n.op_type for n in graph.node}
    assert [i.name for i in graph.input] == ['image', 'ori_shape']

    module = build_end2end(model).eval()
    assert isinstance(module, SingleStageEnd2End)
    session = session_of(path)
    in_dtype = dict(uint8=torch.uint8, float32=torch.float32)[dtype]
    for shape, batch, ori in RUNS:
        image = images(shape, batch, in_dtype)
        ref = mmdet_predict(model, image, ori)
        # ONNX Runtime
        outputs = run_ort(session, image, ori)
        assert_same(ref, as_instances(*outputs), max(ori))
        # the same module in PyTorch (mmcv's NMS)
        with torch.no_grad():
            eager = as_instances(*module(
                image, torch.tensor([ori] * batch)))
        assert_same(ref, eager, max(ori), score_tol=1e-6)
        # K rows, int64 labels and counts (the contract)
        dets, scores, labels, num = outputs
        k = model.bbox_head.test_cfg.max_per_img
        assert dets.shape == (batch, k, 4) and scores.shape == (batch, k)
        assert labels.dtype == num.dtype == np.int64
        assert num.shape == (batch, )


def test_nms_pre_unset_drops_the_lowest_like_mmdet(tmp_path):
    """Without ``nms_pre`` (mmdet's default -1), mmdet's
    ``filter_scores_and_topk`` keeps ``scores[:-1]``: all candidates above
    the threshold but the lowest of each level. The graph does the same
    (a full sort, dynamic candidate count), in PyTorch and ONNX Runtime;
    keeping that candidate gives another result (the control)."""
    from pvt_mm.deploy.end2end import build_end2end
    from pvt_mm.deploy.end2end.export import export_end2end
    model = tiny_dense_model('retinanet_pvt_v2_b0_demo.py', 'pvtv2_li')
    # few candidates per level, so that the dropped one shows
    model.bbox_head.test_cfg.update(nms_pre=-1, score_thr=0.97)
    path = str(tmp_path / 'retinanet.onnx')
    export_end2end(model, path, shape=EXPORT_SHAPE, verify=False)
    session = session_of(path)
    module = build_end2end(model).eval()
    shape, batch, ori = RUNS[0]
    image = images(shape, batch)
    ref = mmdet_predict(model, image, ori)
    assert_same(ref, as_instances(*run_ort(session, image, ori)), max(ori))
    with torch.no_grad():
        assert_same(ref, as_instances(*module(
            image, torch.tensor([ori] * batch))), max(ori), 1e-6)
        module.nms_pre = 10 ** 5  # more than a level has
        more = as_instances(*module(image, torch.tensor([ori] * batch)))
    assert sum(map(len, more)) > sum(len(r.scores) for r in ref)


def test_negative_control_perturbed_weight(tmp_path):
    """The comparison is not blind: 1% noise on one weight tensor of the
    PyTorch model makes its detections differ from the file's."""
    from pvt_mm.deploy.end2end.export import export_end2end
    model = tiny_dense_model('retinanet_pvt_v2_b0_demo.py', 'pvtv2')
    path = str(tmp_path / 'retinanet.onnx')
    export_end2end(model, path, shape=EXPORT_SHAPE, verify=False)
    session = session_of(path)
    shape, batch, ori = RUNS[1]
    image = images(shape, batch)
    got = as_instances(*run_ort(session, image, ori))
    with torch.no_grad():
        w = model.backbone.stages[0].patch_embed.proj.weight
        w.add_(0.01 * w.std() * torch.randn(w.shape))
    ref = mmdet_predict(model, image, ori)
    with pytest.raises(AssertionError, match='have no twin'):
        assert_same(ref, got, max(ori))


def test_unsupported_head_names_no_end2end():
    """A dense head with its own post-processing is refused with the way
    out (--no-end2end)."""
    from pvt_mm.deploy import ExportError
    from pvt_mm.deploy.end2end.single_stage import SingleStageEnd2End
    model = tiny_dense_model('retinanet_pvt_v2_b0_demo.py', 'pvtv2')
    model.bbox_head.test_cfg.nms = dict(type='soft_nms', iou_threshold=0.5)
    with pytest.raises(ExportError, match='--no-end2end'):
        SingleStageEnd2End(model)


def test_build_end2end_refuses_options():
    """No end-to-end builder takes options: ``build_end2end`` refuses
    them for every kind, naming the kind and the options."""
    from pvt_mm.deploy import ExportError
    from pvt_mm.deploy.end2end import build_end2end
    model = tiny_dense_model('retinanet_pvt_v2_b0_demo.py', 'pvtv2')
    with pytest.raises(ExportError, match=r"single_stage end-to-end graph "
                                          r"takes no options, got \['nms'\]"):
        build_end2end(model, nms='soft')


# ------------------------------------------------------------------ NMS
def random_boxes(b, m, groups, seed):
    """Boxes in clusters (many overlaps), scores with a few exact ties."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(b, 8, 2, generator=g) * 200
    pick = torch.randint(0, 8, (b, m), generator=g)
    xy = centres.gather(1, pick[..., None].expand(-1, -1, 2)) + \
        torch.randn(b, m, 2, generator=g) * 6
    wh = torch.rand(b, m, 2, generator=g) * 40 + 4
    boxes = torch.cat([xy - wh / 2, xy + wh / 2], -1)
    scores = torch.rand(b, m, generator=g)
    idxs = torch.randint(0, groups, (b, m), generator=g)
    return boxes, scores, idxs


def mmcv_reference(boxes, scores, idxs, iou_thr, max_keep, cand):
    from mmcv.ops import batched_nms as mmcv_batched_nms
    out = []
    for b in range(len(boxes)):
        inds = cand[b].nonzero().squeeze(1)
        _, keep = mmcv_batched_nms(boxes[b, inds], scores[b, inds],
                                   idxs[b, inds],
                                   dict(type='nms', iou_threshold=iou_thr))
        out.append(inds[keep[:max_keep]])
    return out


def kept(keep, ok):
    return [k[v] for k, v in zip(keep, ok)]


def test_batched_nms_matches_mmcv_eager_graph_and_onnx(tmp_path):
    import onnx

    from pvt_mm.deploy.end2end.nms import batched_nms, batched_nms_graph

    class NMS(torch.nn.Module):
        def forward(self, boxes, scores, idxs, valid):
            return batched_nms(boxes, scores, idxs, 0.5, 40, score_thr=0.2,
                               valid=valid > 0, num_groups=3, split_thr=150)

    path = str(tmp_path / 'nms.onnx')
    boxes, scores, idxs = random_boxes(1, 30, 3, seed=0)
    valid = torch.ones_like(idxs)
    axes = {n: {0: 'b', 1: 'm'} for n in ('boxes', 'scores', 'idxs', 'valid')}
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(NMS(), (boxes, scores, idxs, valid), path,
                          dynamo=False, opset_version=17,
                          input_names=list(axes), output_names=['keep', 'ok'],
                          dynamic_axes=axes)
    nodes = onnx.load(path).graph.node
    assert {n.domain for n in nodes} <= {'', 'ai.onnx'}
    assert sum(n.op_type == 'NonMaxSuppression' for n in nodes) == 2
    session = session_of(path)
    # 120 entries: offsets; 400: per-group NMS (mmcv's split_thr branch)
    for b, m, seed in ((2, 120, 1), (1, 400, 2)):
        boxes, scores, idxs = random_boxes(b, m, 3, seed)
        valid = torch.rand(b, m, generator=torch.Generator().manual_seed(
            seed)) > 0.1
        cand = valid & (scores > 0.2)
        assert (cand.sum(1) >= 150).tolist() == [m > 150] * b
        ref = mmcv_reference(boxes, scores, idxs, 0.5, 40, cand)
        eager = kept(*NMS()(boxes, scores, idxs, valid.long()))
        graph = kept(*batched_nms_graph(boxes, scores, idxs, 0.5, 40,
                                        score_thr=0.2, valid=valid,
                                        num_groups=3, split_thr=150))
        k, ok = session.run(None, dict(boxes=boxes.numpy(),
                                       scores=scores.numpy(),
                                       idxs=idxs.numpy(),
                                       valid=valid.long().numpy()))
        ort = kept(torch.from_numpy(k), torch.from_numpy(ok))
        for r, e, g, o in zip(ref, eager, graph, ort):
            assert len(r) > 10
            assert torch.equal(r, e)
            assert torch.equal(r, g)
            assert torch.equal(r, o)
    # negative control: another IoU threshold keeps other boxes
    other = kept(*batched_nms(boxes, scores, idxs, 0.6, 40, score_thr=0.2,
                              valid=valid))
    assert not all(torch.equal(r, o) for r, o in zip(ref, other))


@pytest.mark.parametrize('per_class', [False, True])
def test_multiclass_nms_matches_mmdet(per_class):
    """``multiclass_nms`` in eager mode and in its graph form against
    mmdet's (scores with a background column appended)."""
    from mmdet.models.layers import multiclass_nms as mmdet_multiclass_nms

    from pvt_mm.deploy.end2end import nms
    b, n, c = 2, 150, 4
    boxes, _, _ = random_boxes(b, n * c, 1, seed=3)
    boxes = boxes.view(b, n, c, 4) if per_class else boxes[:, :n]
    scores = torch.rand(b, n, c, generator=torch.Generator().manual_seed(4))
    cfg = dict(type='nms', iou_threshold=0.5)
    eager = nms.multiclass_nms(boxes, scores, 0.3, 0.5, 50)
    graph = nms.take_detections(*_flat(boxes, scores), *nms.batched_nms_graph(
        *_flat(boxes, scores), 0.5, 50, score_thr=0.3, num_groups=c))
    for i in range(b):
        bg = torch.cat([scores[i], torch.zeros(n, 1)], 1)
        dets, labels = mmdet_multiclass_nms(
            boxes[i].reshape(n, -1), bg, 0.3, cfg, max_num=50)
        for d, s, lab, num in (eager, graph):
            k = int(num[i])
            assert k == len(dets) > 10
            assert torch.equal(d[i, :k], dets[:, :4])
            assert torch.equal(s[i, :k], dets[:, 4])
            assert torch.equal(lab[i, :k], labels)
            assert (lab[i, k:] == -1).all() and not s[i, k:].any()


def _flat(boxes, scores):
    b, n, c = scores.shape
    if boxes.dim() == 3:
        boxes = boxes[:, :, None].expand(-1, -1, c, -1)
    labels = torch.arange(c).expand(b, n, c).reshape(b, -1)
    return boxes.reshape(b, -1, 4), scores.reshape(b, -1), labels


# ----------------------------------------------------------- the command
def test_pytorch2onnx_end2end_by_default(tmp_path, monkeypatch, capsys):
    """tools/deployment/pytorch2onnx.py exports end to end unless
    --no-end2end (today's network-only export, tested in
    test_deploy_onnx.py; here only which one runs, with what); a family
    without an end-to-end graph is refused with --no-end2end named."""
    import json

    from helpers import load_tool, tiny_dense_config

    from pvt_mm.deploy import ExportError
    export = load_tool('deployment/pytorch2onnx')
    cfg = str(tmp_path / 'retinanet_tiny.py')
    tiny_dense_config('retinanet_pvt_v2_b0_demo.py', 'pvtv2').dump(cfg)
    calls = []

    def fake(kind):
        def run(model, out, **kw):
            calls.append((kind, kw))
            return dict(kind='single_stage', config='retinanet_tiny.py',
                        export_shape='64x64', min_size='32',
                        outputs=json.dumps(['dets', 'scores', 'labels',
                                            'num_dets']),
                        input=json.dumps(dict(
                            dtype=kw.get('input_dtype'), channel_order='bgr',
                            resize=dict(scale=[128, 128], keep_ratio=True),
                            min_size=32)))
        return run
    monkeypatch.setattr(export, 'export_end2end', fake('end2end'))
    monkeypatch.setattr(export, 'export_onnx', fake('network'))
    out = str(tmp_path / 'm.onnx')
    export.main([cfg, '--out', out, '--shape', '64', '64'])
    export.main([cfg, '--out', out, '--shape', '64', '64', '--input-dtype',
                 'float32'])
    export.main([cfg, '--out', out, '--shape', '64', '64', '--no-end2end'])
    assert [(k, kw.get('input_dtype'), kw['shape']) for k, kw in calls] == [
        ('end2end', 'uint8', (64, 64)), ('end2end', 'float32', (64, 64)),
        ('network', None, (64, 64))]
    printed = capsys.readouterr().out
    assert 'end-to-end single_stage graph' in printed
    assert 'outputs: dets, scores, labels, num_dets' in printed
    assert 'image (B, 3, H, W) float32 BGR' in printed
    assert 'network-only single_stage graph' in printed
    with pytest.raises(SystemExit):  # argparse: float32 is end-to-end only
        export.parse_args([cfg, '--no-end2end', '--input-dtype', 'float32'])
    monkeypatch.undo()
    # a family without a builder (here: single-stage's taken away)
    from pvt_mm.deploy import end2end
    end2end._load_builders()
    monkeypatch.delitem(end2end._BUILDERS, 'single_stage')
    with pytest.raises(ExportError, match='single_stage.*--no-end2end'):
        export.main([cfg, '--out', out, '--shape', '64', '64'])
