"""Semantic FPN end to end (pvt_mm.deploy.end2end.segmentor): one ONNX graph
from the resized uint8 image and the original size to the label map, against
mmseg's own ``predict`` (data preprocessor + ``predict`` + rescale to
``ori_shape``), with a tiny PVTv2 model on random weights.

Exported at 64x64; run at sizes not seen at export, with an original size
other than the image's (up- and downscaling) and a batch of 2. The label
maps must agree except at pixels whose two best classes tie within fp32
rounding (counted: at most 1% of the pixels). The PyTorch module that is
traced gives exactly mmseg's maps (same operations). Negative control: a
perturbed weight makes the comparison fail.
"""
import numpy as np
import pytest
import torch

from helpers import tiny_dense_model

pytest.importorskip('onnxruntime')
pytestmark = pytest.mark.usefixtures('fast_config_parsing', 'one_thread')

CONFIG = 'sem_fpn_pvt_v2_b0_demo.py'
#: fp32 tolerance (docs/testing.md, "two different computations")
RTOL = 1e-4
EXPORT_SHAPE = (64, 64)
#: (image H, W), (original h, w), batch: none seen at export
RUNS = [((96, 160), (150, 250), 1), ((128, 96), (100, 75), 2)]


def export(model, path, **kwargs):
    from pvt_mm.deploy.end2end.export import export_end2end
    return export_end2end(model, str(path), shape=EXPORT_SHAPE, **kwargs)


def session(path):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options,
                                providers=['CPUExecutionProvider'])


def random_images(shape, batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, *shape), generator=g,
                         dtype=torch.uint8)


def mmseg_predict(model, images, ori_shape):
    """``model.test_step`` on uint8 images of one size, each of original
    size ``ori_shape``: mmseg's data preprocessor, predict and rescale."""
    from mmseg.structures import SegDataSample
    h, w = images.shape[-2:]
    samples = [SegDataSample(metainfo=dict(ori_shape=tuple(ori_shape),
                                           img_shape=(h, w)))
               for _ in range(len(images))]
    with torch.no_grad():
        return model.test_step(dict(inputs=list(images),
                                    data_samples=samples))


def tie_mismatches(ref_sample, label_map) -> int:
    """Pixels where ``label_map`` differs from mmseg's prediction; raises
    AssertionError unless each is a tie of the two best logits within fp32
    rounding, and they are at most 1% of the map."""
    ref = ref_sample.pred_sem_seg.data[0].numpy()
    assert ref.shape == label_map.shape, (ref.shape, label_map.shape)
    differ = ref != label_map
    if not differ.any():
        return 0
    logits = ref_sample.seg_logits.data
    top2 = logits.topk(2, dim=0).values
    gap = (top2[0] - top2[1]).numpy()[differ]
    scale = float(logits.abs().max())
    not_ties = int((gap > 2 * RTOL * scale).sum())
    assert not_ties == 0, (
        f'{int(differ.sum())} pixels differ, {not_ties} of them not ties '
        f'(largest top-2 gap {gap.max():.3g}, scale {scale:.3g})')
    assert differ.mean() <= 0.01, differ.mean()
    return int(differ.sum())


@pytest.fixture(scope='module')
def model():
    return tiny_dense_model(CONFIG, 'pvtv2')


@pytest.fixture(scope='module')
def exported(model, tmp_path_factory):
    path = tmp_path_factory.mktemp('seg') / 'sem_fpn.onnx'
    meta = export(model, path)
    return path, meta


def test_metadata(exported):
    import json
    _, meta = exported
    assert meta['end2end'] == '1' and meta['kind'] == 'segmentor'
    assert json.loads(meta['outputs']) == ['label_map']
    spec = json.loads(meta['input'])
    assert spec['dtype'] == 'uint8' and spec['channel_order'] == 'bgr'
    assert spec['resize'] == {'scale': [128, 128], 'keep_ratio': True}


def test_label_map_equals_mmseg_predict(model, exported):
    from pvt_mm.deploy.end2end import build_end2end
    path, _ = exported
    sess = session(path)
    module = build_end2end(model).eval()
    ties = 0
    for shape, ori, batch in RUNS:
        images = random_images(shape, batch, seed=batch)
        ori_t = torch.tensor([ori] * batch, dtype=torch.int64)
        ref = mmseg_predict(model, images, ori)
        got, = sess.run(None, {'image': images.numpy(),
                               'ori_shape': ori_t.numpy()})
        assert got.dtype == np.int64 and got.shape == (batch, *ori)
        # the traced PyTorch module: exactly mmseg's computation
        with torch.no_grad():
            mine, = module(images, ori_t)
        for i in range(batch):
            assert torch.equal(mine[i], ref[i].pred_sem_seg.data[0])
            ties += tie_mismatches(ref[i], got[i])
            # a real map, not one class everywhere
            assert len(np.unique(got[i])) > 1
    assert ties <= 50, ties


def test_float32_input(model, tmp_path):
    path = tmp_path / 'f32.onnx'
    export(model, path, input_dtype='float32', verify=False)
    (shape, ori, batch) = RUNS[0]
    images = random_images(shape, batch, seed=3)
    ref = mmseg_predict(model, images, ori)
    got, = session(path).run(None, {
        'image': images.float().numpy(),
        'ori_shape': np.array([ori] * batch, dtype=np.int64)})
    tie_mismatches(ref[0], got[0])


def test_negative_control_perturbed_weight(exported):
    """The comparison sees a model that differs from the file: one weight
    of the classifier perturbed after export."""
    path, _ = exported
    other = tiny_dense_model(CONFIG, 'pvtv2')
    with torch.no_grad():
        w = other.decode_head.conv_seg.weight
        w.add_(0.5 * w.std() * torch.randn(w.shape,
                                           generator=torch.Generator()
                                           .manual_seed(5)))
    shape, ori, batch = RUNS[0]
    images = random_images(shape, batch, seed=batch)
    ref = mmseg_predict(other, images, ori)
    got, = session(path).run(None, {
        'image': images.numpy(),
        'ori_shape': np.array([ori] * batch, dtype=np.int64)})
    with pytest.raises(AssertionError, match='not ties'):
        tie_mismatches(ref[0], got[0])


def test_unsupported_settings_are_refused(model):
    import copy

    from pvt_mm.deploy import ExportError
    from pvt_mm.deploy.end2end import build_end2end
    slide = copy.copy(model)
    slide.test_cfg = dict(mode='slide', crop_size=(64, 64), stride=(32, 32))
    with pytest.raises(ExportError, match="mode='whole'"):
        build_end2end(slide)
