"""ONNX Runtime files beside the portable export (pvt_mm.deploy.optimize):
fused attention + ONNX Runtime's graph optimizations (``model.ort.onnx``)
and dynamic int8 (``model.int8.onnx``), with tiny models and random data.

* the fused file of every backbone family (PVTv1, PVTv2, PVTv2-Li, CvT and
  CvT with its class token, in RetinaNet) holds one
  ``com.microsoft::MultiHeadAttention`` per attention layer and no
  ``Softmax`` in the backbone, keeps the portable file's ``pvt_mm.*``
  metadata, and gives the portable file's raw outputs within the fp32
  tolerance of docs/testing.md at sizes not seen at export (one with a
  batch of 2); negative control: a fused kernel with a wrong scale is
  refused by the exporter's check and fails the comparison;
* the eager attention is untouched inside ``onnx_attention``;
* the int8 file quantizes the linear layers and stays within a loose
  tolerance (below) of the portable file, while being measurably
  different from it (it is quantized); negative control: the same
  comparison flags a model with one perturbed weight tensor.
"""
import onnx
import pytest
import torch

from helpers import scaled_mismatches, spread_weights
from helpers import tiny_dense_config as tiny_config

ort = pytest.importorskip('onnxruntime')
pytestmark = pytest.mark.usefixtures('fast_config_parsing', 'one_thread')

#: fp32 tolerance (docs/testing.md, "two different computations")
RTOL, ATOL_OF_MAX = 1e-4, 1e-5
EXPORT_SHAPE = (64, 64)
#: (H, W), batch: sizes not seen at export, one batch of 2
RUN_SIZES = [((96, 160), 1), ((128, 96), 2)]
DETECTOR = 'retinanet_pvt_v2_b0_demo.py'
#: test name -> (tiny backbone of tests/helpers.py, class token)
FAMILIES = {'pvtv1': ('pvtv1', False), 'pvtv2': ('pvtv2', False),
            'pvtv2_li': ('pvtv2_li', False), 'cvt': ('cvt', False),
            'cvt_cls': ('cvt', True)}


def sharpen_attention(model, gain: float = 2.):
    """Query and key projections of unit gain x ``gain``: at their
    initialisation (std 0.02) the scores are ~0.03 and every softmax is
    nearly uniform, so a wrong attention kernel (scale, heads, layout)
    would hardly change the outputs. With these weights the scores have a
    spread of ~``gain``, and the negative control below shows that a 1.25x
    scale error is flagged."""
    from pvt_mm.models.layers import ConvProjAttention, SRAttention
    gen = torch.Generator().manual_seed(2)
    for m in model.modules():
        if isinstance(m, SRAttention):
            linears = [m.q, m.kv]
        elif isinstance(m, ConvProjAttention):
            linears = [m.proj_q, m.proj_k]
        else:
            continue
        for lin in linears:
            w = lin.weight
            w.data = torch.randn(w.shape, generator=gen) * gain / \
                w.shape[1] ** 0.5
    return model


def tiny_model(family: str):
    from pvt_mm.deploy import load_model
    backbone, cls_token = FAMILIES[family]
    cfg = tiny_config(DETECTOR, backbone)
    if cls_token:
        cfg.model.backbone.with_cls_token = True
    return sharpen_attention(spread_weights(load_model(cfg)))


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(path, options,
                                providers=['CPUExecutionProvider'])


def raw_outputs(path, img):
    return [torch.from_numpy(a) for a in session(path).run(
        None, {'img': img.numpy()})]


def mismatches(ref_path, path, img, rtol=RTOL, atol_of_max=ATOL_OF_MAX):
    ref = dict(enumerate(raw_outputs(ref_path, img)))
    got = dict(enumerate(raw_outputs(path, img)))
    assert [t.shape for t in ref.values()] == [t.shape for t in got.values()]
    return scaled_mismatches(ref, got, rtol, atol_of_max)


def attention_layers(model) -> int:
    from pvt_mm.models.layers import ConvProjAttention, SRAttention
    return sum(isinstance(m, (SRAttention, ConvProjAttention))
               for m in model.modules())


def op_counts(path):
    proto = onnx.load(path)
    counts = {}
    for n in proto.graph.node:
        counts[n.domain, n.op_type] = counts.get((n.domain, n.op_type), 0) + 1
    return counts, proto


def images(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, *shape, generator=g)
            for shape, batch in RUN_SIZES]


@pytest.mark.parametrize('family', list(FAMILIES))
def test_fused_file_matches_portable(tmp_path, family):
    from pvt_mm.deploy import export_onnx
    from pvt_mm.deploy.optimize import export_ort_variants, read_props
    model = tiny_model(family)
    plain = str(tmp_path / 'model.onnx')
    export_onnx(model, plain, shape=EXPORT_SHAPE, verify=False)
    # verify=True (the default): the exporter itself runs the fused graph
    # against PyTorch at another size and batch
    paths = export_ort_variants(model, plain, variants=('fused', ),
                                shape=EXPORT_SHAPE)
    fused = paths['fused']
    assert fused == str(tmp_path / 'model.ort.onnx')
    counts, proto = op_counts(fused)
    assert counts.get(('com.microsoft', 'MultiHeadAttention')) == \
        attention_layers(model) > 0
    assert not any(n.op_type == 'Softmax' and 'backbone' in n.name
                   for n in proto.graph.node)
    assert op_counts(plain)[0][('', 'Softmax')] >= attention_layers(model)
    # the portable file's metadata, and what was done to it
    props, plain_props = read_props(fused), read_props(plain)
    assert {k: props[k] for k in plain_props} == plain_props
    assert props['pvt_mm.variant'] == 'fused'
    assert props['pvt_mm.attention'] == 'ms_mha'
    assert props['pvt_mm.ort_optimization'] == 'extended'
    for img in images():
        assert mismatches(plain, fused, img) == {}, (family, img.shape)


def test_fused_file_runs_in_the_runner(tmp_path):
    """ORTModel takes the fused file like the portable one (metadata kept)
    and returns the same detections."""
    from pvt_mm.analysis import fake_data
    from pvt_mm.deploy import ORTModel, export_onnx
    from pvt_mm.deploy.optimize import export_ort_variants
    model = tiny_model('pvtv2')
    plain = str(tmp_path / 'model.onnx')
    export_onnx(model, plain, shape=EXPORT_SHAPE, verify=False)
    fused = export_ort_variants(model, plain, variants=('fused', ),
                                shape=EXPORT_SHAPE, verify=False)['fused']
    a = ORTModel(plain, model).test_step(fake_data('mmdet', (96, 128)))
    b = ORTModel(fused, model).test_step(fake_data('mmdet', (96, 128)))
    ra, rb = a[0].pred_instances, b[0].pred_instances
    assert len(ra) > 0 and len(ra) == len(rb)
    assert torch.equal(ra.labels, rb.labels)
    torch.testing.assert_close(rb.scores, ra.scores, rtol=0, atol=1e-4)
    torch.testing.assert_close(rb.bboxes, ra.bboxes, rtol=0,
                               atol=1e-3 * 128)


def test_fused_kernel_negative_control(tmp_path, monkeypatch):
    """A fused kernel with the wrong scale (1.25x) is refused by the
    exporter's own check against PyTorch, and the fused-vs-portable
    comparison flags it by far more than the tolerance."""
    from pvt_mm.deploy import ExportError, export_onnx
    from pvt_mm.deploy.optimize import export_ort_variants
    from pvt_mm.execution import sdpa
    model = tiny_model('pvtv2')
    plain = str(tmp_path / 'model.onnx')
    export_onnx(model, plain, shape=EXPORT_SHAPE, verify=False)
    symbolic = sdpa._MultiHeadAttention.symbolic

    def wrong_scale(g, q, k, v, num_heads, head_size, scale):
        return symbolic(g, q, k, v, num_heads, head_size, 1.25 * scale)
    monkeypatch.setattr(sdpa._MultiHeadAttention, 'symbolic',
                        staticmethod(wrong_scale))
    with pytest.raises(ExportError, match='differs from PyTorch'):
        export_ort_variants(model, plain, variants=('fused', ),
                            shape=EXPORT_SHAPE)
    fused = export_ort_variants(model, plain, variants=('fused', ),
                                shape=EXPORT_SHAPE, verify=False)['fused']
    bad = mismatches(plain, fused, images()[0])
    assert len(bad) >= 8  # of 10 head outputs
    assert sorted(bad.values())[len(bad) // 2] > 10 * RTOL


def test_eager_attention_unchanged_inside_onnx_attention():
    """Outside an export the switch changes nothing (same kernel, same
    bits), an unknown kernel is refused, and the switch is restored."""
    from pvt_mm.execution import attention, sdpa
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, n, 8, generator=g) for n in (40, 12, 12))
    ref = attention(q, k, v, scale=0.3)
    with sdpa.onnx_attention('ms_mha'):
        assert torch.equal(attention(q, k, v, scale=0.3), ref)
        with sdpa.onnx_attention('standard'):
            assert sdpa._onnx_kernel is None
        assert sdpa._onnx_kernel == 'ms_mha'
    assert sdpa._onnx_kernel is None
    with pytest.raises(ValueError, match='choose one of'):
        with sdpa.onnx_attention('flash'):
            pass


#: int8 tolerance, per output relative to its largest magnitude (not the
#: fp32 one): int8 weights (symmetric, per tensor) and uint8 activations
#: (asymmetric, per call) each round to 1/255 of their range, a few 0.1% of
#: a linear layer's output; the tiny RetinaNet's backbone has 12-20
#: quantized linears before the fp32 neck and head. Measured (tiny PVTv2 /
#: CvT with class token, sharpened attention, the two run sizes): worst
#: output 0.95-1.05% / 0.11%, per channel 1.05% / 0.08%. 3% leaves ~3x room
#: for other CPUs' int8 kernels; the negative control (10% noise on the
#: first patch embedding's weights) gives 1.5-19% and is flagged on 8 of
#: the 10 outputs.
INT8_RTOL = 0.03


def test_int8_file_close_to_portable(tmp_path):
    from pvt_mm.deploy import export_onnx
    from pvt_mm.deploy.optimize import export_ort_variants, read_props
    model = tiny_model('pvtv2')
    plain = str(tmp_path / 'model.onnx')
    export_onnx(model, plain, shape=EXPORT_SHAPE, verify=False)
    int8 = export_ort_variants(model, plain, variants=('int8', ),
                               shape=EXPORT_SHAPE, verify=False)['int8']
    assert int8 == str(tmp_path / 'model.int8.onnx')
    counts, proto = op_counts(int8)
    constants = {i.name for i in proto.graph.initializer}
    float_linears = [n.name for n in proto.graph.node
                     if n.op_type == 'MatMul' and n.input[1] in constants]
    assert counts.get(('', 'MatMulInteger'), 0) > 0 and not float_linears
    assert counts[('com.microsoft', 'MultiHeadAttention')] == \
        attention_layers(model)
    props = read_props(int8)
    assert props['pvt_mm.variant'] == 'int8'
    assert props['pvt_mm.model_sha256'] == \
        read_props(plain)['pvt_mm.model_sha256']
    for img in images():
        assert mismatches(plain, int8, img, INT8_RTOL, 0.) == {}
        # and it is quantized: not within the fp32 tolerance everywhere
        assert mismatches(plain, int8, img) != {}
    # negative control: the first weights off by 10% of their spread
    with torch.no_grad():
        w = model.backbone.stages[0].patch_embed.proj.weight
        w.add_(0.1 * w.std() * torch.randn(
            w.shape, generator=torch.Generator().manual_seed(3)))
    other = str(tmp_path / 'perturbed.onnx')
    export_onnx(model, other, shape=EXPORT_SHAPE, verify=False)
    bad = mismatches(plain, other, images()[0], INT8_RTOL, 0.)
    assert len(bad) >= 5  # of 10 head outputs


@pytest.mark.parametrize('config,family', [
    (DETECTOR, 'cvt_cls'), ('sem_fpn_pvt_v2_b0_demo.py', 'pvtv2')])
def test_end2end_fused_file_matches_portable(tmp_path, config, family):
    """The end-to-end files (image + ori_shape in, detections / label map
    out, NMS in the graph): the fused one gives the portable one's final
    results at sizes not seen at export (batch 2, rescaled)."""
    from pvt_mm.deploy import export_end2end, load_model
    from pvt_mm.deploy.end2end.export import example_inputs
    from pvt_mm.deploy.optimize import export_ort_variants
    backbone, cls_token = FAMILIES[family]
    cfg = tiny_config(config, backbone)
    if cls_token:
        cfg.model.backbone.with_cls_token = True
    model = sharpen_attention(spread_weights(load_model(cfg)))
    plain = str(tmp_path / 'e2e.onnx')
    export_end2end(model, plain, shape=EXPORT_SHAPE, verify=False)
    fused = export_ort_variants(model, plain, variants=('fused', ),
                                end2end=True, shape=EXPORT_SHAPE)['fused']
    assert op_counts(fused)[0][('com.microsoft', 'MultiHeadAttention')] == \
        attention_layers(model)
    for (h, w), batch, ori in [((96, 160), 2, (144, 240)),
                               ((128, 96), 1, (171, 128))]:
        image, ori_shape = example_inputs((h, w), batch=batch,
                                          ori_shape=ori, seed=1)
        feed = {'image': image.numpy(), 'ori_shape': ori_shape.numpy()}
        ref = session(plain).run(None, feed)
        got = session(fused).run(None, feed)
        if config == DETECTOR:
            from test_end2end_single_stage import as_instances, assert_same
            assert int(ref[3].sum()) > 0
            assert_same(as_instances(*ref), as_instances(*got), max(ori))
        else:
            # label maps: pixels may differ only where two classes tie
            assert ref[0].shape == (batch, *ori)
            assert (ref[0] != got[0]).mean() < 1e-3


def test_pytorch2onnx_writes_ort_files(tmp_path, monkeypatch, capsys):
    """``--ort fused int8`` writes model.ort.onnx / model.int8.onnx beside
    the end-to-end file; ``--calibrate N`` quantizes the neck's and head's
    convolutions with N calibration images (batches stubbed here: the test
    needs no dataset)."""
    import json

    from helpers import load_tool
    from pvt_mm.analysis import fake_data
    from pvt_mm.deploy import optimize
    from pvt_mm.deploy.optimize import read_props
    export = load_tool('deployment/pytorch2onnx')
    cfg = str(tmp_path / 'retinanet_tiny.py')
    tiny_config(DETECTOR, 'pvtv2').dump(cfg)
    asked = []

    def batches(cfg, count, split='train'):
        asked.append(count)
        return [fake_data('mmdet', (64, 96)) for _ in range(count)]
    monkeypatch.setattr(optimize, 'calibration_batches', batches)
    out = str(tmp_path / 'model.onnx')
    export.main([cfg, '--out', out, '--shape', '64', '64', '--ort', 'fused',
                 'int8', '--calibrate', '2'])
    printed = capsys.readouterr().out
    fused, int8 = str(tmp_path / 'model.ort.onnx'), str(tmp_path /
                                                          'model.int8.onnx')
    assert f'fused ONNX Runtime file -> {fused}' in printed
    assert f'int8 ONNX Runtime file -> {int8}' in printed
    assert asked == [2]
    assert read_props(fused)['pvt_mm.end2end'] == '1'
    assert read_props(fused)['pvt_mm.variant'] == 'fused'
    quant = json.loads(read_props(int8)['pvt_mm.quantization'])
    assert quant['static']['calibration_inputs'] == 2
    counts = op_counts(int8)[0]
    assert counts[('', 'QuantizeLinear')] > 0  # the static convolutions
    assert counts[('', 'MatMulInteger')] > 0
    assert op_counts(out)[0].get(('com.microsoft', 'MultiHeadAttention')) \
        is None  # the portable file stays standard
