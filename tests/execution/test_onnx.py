"""ONNX export with dynamic batch / height / width, checked with onnxruntime
against PyTorch at the export size and at another (odd) size."""
import warnings

import numpy as np
import pytest
import torch

from helpers import PYRAMID_CVT, PYRAMID_V2
from pvt_mm import CvT, PVTv1, PVTv2

ort = pytest.importorskip('onnxruntime')
pytest.importorskip('onnx')


MODELS = {
    # PVTv1 exported at its pretraining size: the pos-embed resize must
    # still be in the graph for the other size.
    'PVTv1': lambda: PVTv1(arch=PYRAMID_V2, pretrain_img_size=64),
    'PVTv1-cls': lambda: PVTv1(arch=PYRAMID_V2, pretrain_img_size=64,
                               out_type='cls_token'),
    'PVTv2': lambda: PVTv2(arch=PYRAMID_V2),
    'PVTv2-li': lambda: PVTv2(arch=dict(PYRAMID_V2, linear=True)),
    'CvT': lambda: CvT(arch=PYRAMID_CVT, extra_downsample=True),
    'CvT-cls': lambda: CvT(arch=PYRAMID_CVT, out_type='cls_token'),
}


def export(model, path, size=(64, 64)):
    n = len(model.out_channels) if model.out_type == 'featmap' else 1
    names = [f'out{i}' for i in range(n)]
    axes = {'img': {0: 'batch', 2: 'height', 3: 'width'}}
    axes.update({name: {0: 'batch'} for name in names})
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')       # tracer warnings on shape checks
        torch.onnx.export(model, torch.randn(1, 3, *size), path, dynamo=False,
                          input_names=['img'], output_names=names,
                          dynamic_axes=axes, opset_version=17)


@pytest.mark.parametrize('name', list(MODELS))
def test_onnx_export_matches_pytorch(tmp_path, name):
    model = MODELS[name]()
    model.init_weights()
    model.eval()
    path = str(tmp_path / f'{name}.onnx')
    export(model, path)
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    for shape in [(1, 3, 64, 64), (2, 3, 97, 130)]:
        x = torch.randn(shape)
        with torch.no_grad():
            expected = model(x)
        got = session.run(None, {'img': x.numpy()})
        assert len(got) == len(expected)
        for e, g in zip(expected, got):
            assert g.shape == tuple(e.shape)
            np.testing.assert_allclose(g, e.numpy(), atol=1e-4, rtol=1e-4)


def test_traceable_pool_equals_adaptive_pool():
    from pvt_mm.execution import traceable_adaptive_avg_pool2d
    for shape in [(1, 2, 7, 7), (2, 3, 9, 13), (1, 1, 30, 17), (1, 1, 3, 5)]:
        x = torch.randn(shape)
        assert torch.allclose(traceable_adaptive_avg_pool2d(x, 7),
                              torch.nn.functional.adaptive_avg_pool2d(x, 7),
                              atol=1e-6)
