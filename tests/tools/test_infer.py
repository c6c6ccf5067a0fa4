"""The three deployment commands end to end, in-process, with tiny models on
generated images: render predictions (tools/misc/infer.py), export
(tools/deployment/pytorch2onnx.py), run the export (infer.py --onnx); and
their clear errors."""
import json
import os.path as osp

import pytest
import torch

from helpers import load_tool, tiny_dense_config, tiny_dense_model

pytest.importorskip('onnxruntime')
pytestmark = pytest.mark.usefixtures('fast_config_parsing', 'one_thread')


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    from pvt_mm.data.demo_data import make_demo_data
    root = make_demo_data(str(tmp_path_factory.mktemp('demo')), num_train=1,
                          num_val=2)
    return root


def save(tmp_path, name, backbone, classes):
    """A tiny model's config file and checkpoint (with class names)."""
    cfg = tiny_dense_config(name, backbone)
    model = tiny_dense_model(name, backbone)
    stem = f'{osp.splitext(name)[0]}_{backbone}'
    cfg_path = str(tmp_path / f'{stem}.py')
    cfg.dump(cfg_path)
    ckpt = str(tmp_path / f'{stem}.pth')
    palette = [(220, 20, 60), (0, 0, 142), (0, 80, 100), (250, 170, 30)]
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(dataset_meta=dict(
                        classes=classes, palette=palette[:len(classes)]))),
               ckpt)
    return cfg_path, ckpt


def read_preds(folder):
    import glob
    return {osp.basename(p): json.load(open(p))
            for p in sorted(glob.glob(osp.join(folder, 'preds', '*.json')))}


def test_detection_render_export_run(tmp_path, images):
    infer = load_tool('misc/infer')
    export = load_tool('deployment/pytorch2onnx')
    classes = ('rectangle', 'ellipse', 'triangle')
    cfg, ckpt = save(tmp_path, 'retinanet_pvt_v2_b0_demo.py', 'pvtv2',
                     classes)
    val = osp.join(images, 'coco', 'val')

    out = str(tmp_path / 'torch')
    written = infer.main([cfg, ckpt, val, '--out-dir', out])
    assert len(written) == 2
    for w in written:
        assert osp.getsize(w['vis']) > 0
    preds = read_preds(out)
    assert sorted(preds) == ['000000.json', '000001.json']
    first = preds['000000.json']
    assert len(first['labels']) == len(first['scores']) == len(first['bboxes'])
    assert len(first['scores']) > 0

    onnx = str(tmp_path / 'model.onnx')
    export.main([cfg, ckpt, '--out', onnx, '--shape', '64', '64'])
    out_ort = str(tmp_path / 'ort')
    # single-stage: the ONNX file alone (class names from its metadata)
    infer.main([cfg, '--onnx', onnx, val, '--precision', 'fp32', '--out-dir',
                out_ort])
    ort_preds = read_preds(out_ort)
    assert sorted(ort_preds) == sorted(preds)
    for name, p in preds.items():
        q = ort_preds[name]
        # parity is tested in tests/deploy; here: the same top detection
        top_p = max(range(len(p['scores'])), key=p['scores'].__getitem__)
        top_q = max(range(len(q['scores'])), key=q['scores'].__getitem__)
        assert p['labels'][top_p] == q['labels'][top_q]
        assert abs(p['scores'][top_p] - q['scores'][top_q]) < 1e-3
        assert max(abs(a - b) for a, b in zip(p['bboxes'][top_p],
                                              q['bboxes'][top_q])) < 0.2


def test_segmentation_render(tmp_path, images):
    infer = load_tool('misc/infer')
    classes = ('background', 'rectangle', 'ellipse', 'triangle')
    cfg, ckpt = save(tmp_path, 'sem_fpn_pvt_v2_b0_demo.py', 'pvtv2_li',
                     classes)
    out = str(tmp_path / 'seg')
    img = osp.join(images, 'ade', 'images', 'validation', '000000.jpg')
    written = infer.main([cfg, ckpt, img, '--out-dir', out])
    assert osp.getsize(written[0]['vis']) > 0
    pred = read_preds(out)['000000.json']
    assert pred['classes'] == list(classes)
    assert len(pred['sem_seg']) == 128 and len(pred['sem_seg'][0]) == 128
    assert sum(pred['pixels_per_class']) == 128 * 128


def test_clear_errors(tmp_path, images):
    from pvt_mm.deploy import CheckpointMismatchError, ExportMismatchError
    infer = load_tool('misc/infer')
    export = load_tool('deployment/pytorch2onnx')
    classes = ('rectangle', 'ellipse', 'triangle')
    cfg, _ = save(tmp_path, 'retinanet_pvt_v2_b0_demo.py', 'pvtv2', classes)
    cfg_cvt, ckpt_cvt = save(tmp_path, 'retinanet_pvt_v2_b0_demo.py', 'cvt',
                             classes)
    val = osp.join(images, 'coco', 'val')
    # a checkpoint of another config: rendering and export both refuse it
    with pytest.raises(CheckpointMismatchError, match='shape mismatches'):
        infer.main([cfg, ckpt_cvt, val, '--out-dir', str(tmp_path / 'x')])
    with pytest.raises(CheckpointMismatchError):
        export.main([cfg, ckpt_cvt, '--out', str(tmp_path / 'x.onnx')])
    # an ONNX file exported from another config
    onnx = str(tmp_path / 'cvt.onnx')
    export.main([cfg_cvt, ckpt_cvt, '--out', onnx, '--shape', '64', '64'])
    with pytest.raises(ExportMismatchError, match='exported from config'):
        infer.main([cfg, '--onnx', onnx, val, '--out-dir',
                    str(tmp_path / 'y')])
    # an export size the backbone cannot take
    from pvt_mm.deploy import InputSizeError
    with pytest.raises(InputSizeError, match='cannot take a 16x16 input'):
        export.main([cfg, '--out', str(tmp_path / 'z.onnx'), '--shape', '16'])
