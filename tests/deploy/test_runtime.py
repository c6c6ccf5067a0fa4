"""pvt_mm.runtime: end-to-end ONNX files run without torch, mmcv, mmdet or
mmseg, against the PyTorch models.

Tiny models on random weights (Semantic FPN and RetinaNet with PVTv2) are
exported end to end here; their files run in a subprocess where importing
torch, mmcv, mmdet or mmseg fails (:data:`BLOCKER`, a ``sys.meta_path``
finder that answers as if they were not installed), through the runtime's
API, ``python -m pvt_mm.runtime`` and ``tools/misc/infer.py --onnx``. The
parent process computes what the PyTorch model predicts on the same
original images, resized by mmcv as the test pipeline resizes them, and
compares (label maps: equal but for tied pixels; detections: each has a
twin but for rounding ties, tests/deploy/test_deploy_onnx.py's rule).

Also: the runtime's resize and image reading are mmcv's exactly; its RLE is
pycocotools'; its torch-free fingerprint is pvt_mm.deploy's; each bad input
gives its clear error; ``pip install --no-deps`` (here ``uv pip install
--no-deps --target``) of the wheel gives a runtime-only pvt_mm that runs a
file; negative control: the blocker blocks.
"""
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest
import torch

from helpers import REPO_ROOT, tiny_dense_config, tiny_dense_model

pytest.importorskip('onnxruntime')
cv2 = pytest.importorskip('cv2')
pytestmark = pytest.mark.usefixtures('fast_config_parsing', 'one_thread')

SEG_CONFIG = 'sem_fpn_pvt_v2_b0_demo.py'
DET_CONFIG = 'retinanet_pvt_v2_b0_demo.py'
SEG_CLASSES = ['background', 'rectangle', 'ellipse', 'triangle']
DET_CLASSES = ['rectangle', 'ellipse', 'triangle']
PALETTE = [[220, 20, 60], [0, 0, 142], [0, 80, 100], [250, 170, 30]]
#: original image sizes (h, w): the demo configs resize to within 128x128,
#: so each is scaled (up or down) and none is the export size
IMAGE_SIZES = {'a.jpg': (100, 170), 'b.png': (90, 60), 'c.jpg': (100, 170)}
RTOL = 1e-4

#: Python code that makes torch, mmcv, mmdet and mmseg unimportable, as
#: if not installed (ModuleNotFoundError with the module's name).
BLOCKER = textwrap.dedent('''
    import sys
    BLOCKED = ('torch', 'mmcv', 'mmdet', 'mmseg')


    class NotInstalled:
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in BLOCKED:
                raise ModuleNotFoundError(f'No module named {name!r}',
                                          name=name)
            return None


    def leaked():
        return sorted(m for m in sys.modules if m.split('.')[0] in BLOCKED)


    assert not leaked(), leaked()
    sys.meta_path.insert(0, NotInstalled())
''')


def run_blocked(body: str, values: dict = None, cwd: str = REPO_ROOT,
                env: dict = None) -> dict:
    """Run :data:`BLOCKER`, ``NAME = value`` for each of ``values``, then
    ``body`` in a fresh interpreter; ``body`` prints one JSON line last,
    which is returned."""
    full_env = dict(os.environ, OMP_NUM_THREADS='1', **(env or {}))
    constants = ''.join(f'{k} = {v!r}\n' for k, v in (values or {}).items())
    code = BLOCKER + constants + textwrap.dedent(body)
    res = subprocess.run([sys.executable, '-c', code], cwd=cwd, env=full_env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, (
        f'exit {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-6000:]}')
    return json.loads(res.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope='module')
def images(tmp_path_factory):
    """Shapes on noise at :data:`IMAGE_SIZES` (JPEG and PNG)."""
    folder = tmp_path_factory.mktemp('images')
    rng = np.random.RandomState(0)
    for name, (h, w) in IMAGE_SIZES.items():
        img = rng.randint(0, 80, (h, w, 3)).astype(np.uint8)
        cv2.rectangle(img, (w // 8, h // 6), (w // 2, h // 2),
                      (40, 200, 60), -1)
        cv2.circle(img, (3 * w // 4, 2 * h // 3), min(h, w) // 5,
                   (220, 90, 30), -1)
        assert cv2.imwrite(str(folder / name), img)
    return folder


def export_tiny(folder, config, backbone, classes, end2end=True):
    """A tiny model of ``config``, its config file and its export."""
    from pvt_mm.deploy import export_onnx
    from pvt_mm.deploy.end2end.export import export_end2end
    cfg = tiny_dense_config(config, backbone)
    model = tiny_dense_model(config, backbone)
    model.dataset_meta = dict(classes=classes,
                              palette=[tuple(c) for c in
                                       PALETTE[:len(classes)]])
    stem = f'{osp.splitext(config)[0]}_{backbone}'
    cfg_path = str(folder / f'{stem}.py')
    cfg.dump(cfg_path)
    onnx = str(folder / f'{stem}{"" if end2end else "_network"}.onnx')
    if end2end:
        # the exporter's own ORT check is tested with the families; here
        # the runtime is compared with PyTorch directly
        meta = export_end2end(model, onnx, shape=(64, 64), verify=False)
    else:
        meta = export_onnx(model, onnx, shape=(64, 64), verify=False)
    return types.SimpleNamespace(model=model, cfg=cfg, config=cfg_path,
                                 onnx=onnx, meta=meta)


@pytest.fixture(scope='module')
def seg(tmp_path_factory):
    return export_tiny(tmp_path_factory.mktemp('seg'), SEG_CONFIG, 'pvtv2',
                       SEG_CLASSES)


@pytest.fixture(scope='module')
def det(tmp_path_factory):
    return export_tiny(tmp_path_factory.mktemp('det'), DET_CONFIG, 'pvtv2',
                       DET_CLASSES)


# ------------------------------------------------- PyTorch references
def pipeline_input(path):
    """The image as the test pipeline gives it: mmcv reads it and
    ``mmcv.imrescale``s it to the demo configs' (128, 128)."""
    import mmcv
    img = mmcv.imread(path)
    resized = mmcv.imrescale(img, (128, 128))
    return torch.from_numpy(resized).permute(2, 0, 1).contiguous(), \
        img.shape[:2], resized.shape[:2]


def torch_segmentation(model, path):
    from mmseg.structures import SegDataSample
    inputs, ori, hw = pipeline_input(path)
    sample = SegDataSample(metainfo=dict(ori_shape=ori, img_shape=hw))
    with torch.no_grad():
        return model.test_step(dict(inputs=[inputs],
                                    data_samples=[sample]))[0]


def torch_detection(model, path):
    from mmdet.structures import DetDataSample
    inputs, (oh, ow), (h, w) = pipeline_input(path)
    sample = DetDataSample(metainfo=dict(ori_shape=(oh, ow), img_shape=(h, w),
                                         scale_factor=(w / ow, h / oh)))
    with torch.no_grad():
        return model.test_step(dict(inputs=[inputs],
                                    data_samples=[sample]))[0]


def assert_same_label_map(ref_sample, label_map):
    """Equal to mmseg's prediction but for pixels whose two best logits
    tie within fp32 rounding (at most 1% of them)."""
    ref = ref_sample.pred_sem_seg.data[0].numpy()
    label_map = np.asarray(label_map)
    assert ref.shape == label_map.shape
    differ = ref != label_map
    if differ.any():
        logits = ref_sample.seg_logits.data
        top2 = logits.topk(2, dim=0).values
        gap = (top2[0] - top2[1]).numpy()[differ]
        assert (gap <= 2 * RTOL * float(logits.abs().max())).all()
        assert differ.mean() <= 0.01
    assert len(np.unique(label_map)) > 1


def assert_same_detections(ref_sample, got: dict, side: int):
    from test_deploy_onnx import assert_same_detections as same
    got = types.SimpleNamespace(
        bboxes=torch.tensor(got['bboxes'], dtype=torch.float32).reshape(-1, 4),
        scores=torch.tensor(got['scores'], dtype=torch.float32),
        labels=torch.tensor(got['labels'], dtype=torch.int64))
    assert len(ref_sample.pred_instances) > 0
    same(ref_sample.pred_instances, got, side, score_tol=1e-4)


# ---------------------------------------------------------- the runtime
RUN_SEG = '''
    import json, runpy, sys
    import numpy as np
    import pvt_mm, pvt_mm_config_hook
    import pvt_mm.runtime as rt
    out = dict(runtime_only=pvt_mm.RUNTIME_ONLY)
    try:
        pvt_mm.PVTv2
    except ImportError as e:
        out['model_error'] = str(e)
    model = rt.End2EndModel(ONNX, precision='fp32')
    # paths and an array, batched by size
    import cv2
    results = model([IMAGES[0], cv2.imread(IMAGES[1]), IMAGES[2]],
                    batch_size=2)
    out['label_maps'] = [r.label_map.tolist() for r in results]
    out['single'] = type(model(IMAGES[1])).__name__
    sys.argv = ['pvt_mm.runtime', ONNX, *IMAGES, '--precision', 'fp32',
                '--out-dir', OUT + '/cli',
                '--batch-size', '2', '--threads', '1']
    runpy.run_module('pvt_mm.runtime', run_name='__main__')
    out['mmengine_after_runtime'] = 'mmengine' in sys.modules
    sys.argv = ['infer.py', CONFIG, '--onnx', ONNX, *IMAGES,
                '--precision', 'fp32', '--out-dir',
                OUT + '/infer']
    runpy.run_path(INFER, run_name='__main__')
    # a config the file was not exported from (the demo config: its
    # mmseg:: bases resolve without torch too)
    sys.argv = ['infer.py', OTHER_CONFIG, '--onnx', ONNX, IMAGES[0],
                '--out-dir', OUT + '/other', '--debug']
    try:
        runpy.run_path(INFER, run_name='__main__')
    except ValueError as e:
        out['mismatch'] = [type(e).__name__, str(e)]
    out['leaked'] = leaked()
    print(json.dumps(out))
'''


def read_preds(folder):
    return {f: json.load(open(osp.join(folder, 'preds', f)))
            for f in sorted(os.listdir(osp.join(folder, 'preds')))
            if f.endswith('.json')}


def test_segmentation_without_torch(seg, images, tmp_path):
    paths = [str(images / n) for n in IMAGE_SIZES]
    out = run_blocked(RUN_SEG, dict(
        ONNX=seg.onnx, IMAGES=paths, OUT=str(tmp_path), CONFIG=seg.config,
        OTHER_CONFIG=osp.join(REPO_ROOT, 'configs', 'demo', SEG_CONFIG),
        INFER=osp.join(REPO_ROOT, 'tools', 'misc', 'infer.py')))
    assert out['leaked'] == []
    assert out['runtime_only'] is True
    assert 'needs torch' in out['model_error']
    assert not out['mmengine_after_runtime']
    assert out['single'] == 'Segmentation'
    # against the PyTorch model on the same original images
    for path, label_map in zip(paths, out['label_maps']):
        assert_same_label_map(torch_segmentation(seg.model, path), label_map)
    # python -m pvt_mm.runtime and infer.py --onnx: the same files, the
    # layout infer.py writes with PyTorch (tests/tools/test_infer.py)
    for tool in ('cli', 'infer'):
        folder = str(tmp_path / tool)
        preds = read_preds(folder)
        assert sorted(preds) == ['a.json', 'b.json', 'c.json']
        for name, label_map in zip(IMAGE_SIZES, out['label_maps']):
            stem = osp.splitext(name)[0]
            p = preds[stem + '.json']
            assert set(p) == {'image', 'classes', 'pixels_per_class',
                              'sem_seg', 'runtime'}
            # auto in fp32: ONNX Runtime
            assert p['runtime']['backend'] == 'onnxruntime'
            assert p['runtime']['precision'] == 'fp32'  # as asked
            assert p['classes'] == SEG_CLASSES
            assert p['sem_seg'] == label_map
            assert sum(p['pixels_per_class']) == np.prod(IMAGE_SIZES[name])
            png = cv2.imread(osp.join(folder, 'preds', stem + '.png'),
                             cv2.IMREAD_UNCHANGED)
            assert np.array_equal(png, np.array(label_map, np.uint8))
            vis = cv2.imread(osp.join(folder, 'vis', name))
            assert vis.shape == (*IMAGE_SIZES[name], 3)
    # the file belongs to another config: refused, naming both
    kind, message = out['mismatch']
    assert kind == 'ConfigMismatchError'
    assert 'exported from config' in message and SEG_CONFIG in message


RUN_DET = '''
    import json, runpy, sys
    import pvt_mm.runtime as rt
    model = rt.End2EndModel(ONNX, precision='fp32')
    results = model(IMAGES)
    out = dict(results=[r.to_json() for r in results],
               masks=[r.masks is None for r in results])
    sys.argv = ['infer.py', CONFIG, '--onnx', ONNX, *IMAGES,
                '--precision', 'fp32', '--out-dir',
                OUT]
    runpy.run_path(INFER, run_name='__main__')
    out['leaked'] = leaked()
    print(json.dumps(out))
'''


def test_detection_without_torch(det, images, tmp_path):
    paths = [str(images / n) for n in IMAGE_SIZES]
    out = run_blocked(RUN_DET, dict(
        ONNX=det.onnx, IMAGES=paths, OUT=str(tmp_path), CONFIG=det.config,
        INFER=osp.join(REPO_ROOT, 'tools', 'misc', 'infer.py')))
    assert out['leaked'] == []
    assert out['masks'] == [True] * len(paths)  # RetinaNet: boxes only
    preds = read_preds(str(tmp_path))
    for path, name, got in zip(paths, IMAGE_SIZES, out['results']):
        assert_same_detections(torch_detection(det.model, path), got,
                               max(IMAGE_SIZES[name]))
        # DetInferencer's layout (labels, scores, bboxes), all detections
        p = preds[osp.splitext(name)[0] + '.json']
        # which runtime made them (OpenVINO where installed: auto)
        assert p.pop('runtime')['precision'] == 'fp32'
        assert p == got
        assert set(p) == {'labels', 'scores', 'bboxes'}
        vis = cv2.imread(str(tmp_path / 'vis' / name))
        assert vis.shape == (*IMAGE_SIZES[name], 3)


def test_the_blocker_blocks():
    """Negative control: in the subprocess torch, mmcv, mmdet and mmseg
    cannot be imported (here they can)."""
    out = run_blocked('''
        import json
        failed = {}
        for name in ('torch', 'torch.nn', 'mmcv', 'mmdet.apis', 'mmseg'):
            try:
                __import__(name)
            except ModuleNotFoundError as e:
                failed[name] = e.name
        print(json.dumps(failed))
    ''')
    assert out == {'torch': 'torch', 'torch.nn': 'torch', 'mmcv': 'mmcv',
                   'mmdet.apis': 'mmdet', 'mmseg': 'mmseg'}


def test_missing_dependency_names_the_package(monkeypatch, seg, tmp_path):
    """Without OpenCV or ONNX Runtime the runtime says what it needs each
    for and what to pip install, at the first use (importing it works)."""
    from pvt_mm.runtime import End2EndModel, read_image
    image = tmp_path / 'x.jpg'
    image.write_bytes(b'not read')
    for module, package in (('cv2', 'opencv-python-headless'),
                            ('onnxruntime', 'onnxruntime')):
        with monkeypatch.context() as m:
            m.setitem(sys.modules, module, None)  # import raises ImportError
            with pytest.raises(ImportError, match=f'pip install {package} '):
                if module == 'cv2':
                    read_image(str(image))
                else:
                    End2EndModel(seg.onnx, backend='onnxruntime')
    from pvt_mm.runtime.backends import BackendError
    with monkeypatch.context() as m:
        m.setitem(sys.modules, 'openvino', None)
        with pytest.raises(BackendError, match='OpenVINO is not installed '
                           'here: pip install openvino'):
            End2EndModel(seg.onnx, backend='openvino')
        # auto: ONNX Runtime, and it says so
        assert End2EndModel(seg.onnx).choice.describe() == (
            'ONNX Runtime fp32 (OpenVINO is not installed)')


def test_installed_without_dependencies(seg, images, tmp_path):
    """``pip install --no-deps pvt_mm`` (the documented torch-free
    install; here uv's pip on the wheel built from this checkout): outside
    the checkout, ``import pvt_mm`` is runtime-only and ``python -m
    pvt_mm.runtime`` runs the file."""
    uv = shutil.which('uv')
    assert uv, 'uv is not on PATH (tools/setup_env.sh installs it)'
    dist, target = tmp_path / 'dist', tmp_path / 'site'
    # sdist, then the wheel from it (as users get it; nothing is built in
    # the checkout)
    subprocess.run([uv, 'build', '--quiet', '--out-dir', str(dist),
                    REPO_ROOT], check=True, capture_output=True, cwd=tmp_path,
                   timeout=300)
    wheel, = [str(p) for p in dist.glob('pvt_mm-*.whl')]
    subprocess.run([uv, 'pip', 'install', '--quiet', '--no-deps', '--target',
                    str(target), '--python', sys.executable, wheel],
                   check=True, capture_output=True, timeout=300)
    image = str(images / 'b.png')
    out = run_blocked('''
        import json, runpy, sys
        import pvt_mm
        sys.argv = ['pvt_mm.runtime', ONNX, IMAGE, '--precision', 'fp32',
                    '--out-dir', OUT]
        runpy.run_module('pvt_mm.runtime', run_name='__main__')
        print(json.dumps(dict(file=pvt_mm.__file__,
                              runtime_only=pvt_mm.RUNTIME_ONLY,
                              leaked=leaked())))
    ''', dict(ONNX=seg.onnx, IMAGE=image, OUT=str(tmp_path / 'out')),
        cwd=str(tmp_path), env=dict(PYTHONPATH=str(target)))
    assert out['file'].startswith(str(target)), out['file']
    assert out['runtime_only'] and out['leaked'] == []
    pred = json.load(open(tmp_path / 'out' / 'preds' / 'b.json'))
    assert_same_label_map(torch_segmentation(seg.model, image),
                          pred['sem_seg'])


# -------------------------------------------------------- clear errors
def test_clear_errors(seg, images, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from pvt_mm.runtime import (ConfigMismatchError, End2EndModel, ImageError,
                                ImageTooSmallError, NotEnd2EndError,
                                model_fingerprint)
    for cls in (ConfigMismatchError, ImageError, ImageTooSmallError,
                NotEnd2EndError):
        assert issubclass(cls, ValueError)
    # a network-only export (--no-end2end)
    network = export_tiny(tmp_path, SEG_CONFIG, 'pvtv2', SEG_CLASSES,
                          end2end=False)
    with pytest.raises(NotEnd2EndError, match=r'network-only(.|\n)*'
                       r'pytorch2onnx.py CONFIG CHECKPOINT \(without '
                       r'--no-end2end\)'):
        End2EndModel(network.onnx)
    # an ONNX file of another program, and a file that is not ONNX
    x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info('y', TensorProto.FLOAT, [1])
    other = str(tmp_path / 'other.onnx')
    onnx.save(helper.make_model(helper.make_graph(
        [helper.make_node('Identity', ['x'], ['y'])], 'g', [x], [y])), other)
    with pytest.raises(NotEnd2EndError, match='not written by pvt_mm'):
        End2EndModel(other)
    text = tmp_path / 'notes.onnx'
    text.write_text('not a model')
    with pytest.raises(NotEnd2EndError, match='not an ONNX model'):
        End2EndModel(str(text))
    # a file from another config (its fingerprint given)
    model = End2EndModel(seg.onnx)
    assert model.fingerprint == model_fingerprint(seg.cfg, end2end=True)
    cvt = tiny_dense_config(SEG_CONFIG, 'cvt')
    with pytest.raises(ConfigMismatchError, match='exported from config'):
        End2EndModel(seg.onnx, fingerprint=model_fingerprint(cvt, True),
                     config='cvt.py')
    # images of the wrong kind
    img = cv2.imread(str(images / 'b.png'))
    bad = {
        'COLOR_GRAY2BGR': img[..., 0],
        'COLOR_BGRA2BGR': np.dstack([img, img[..., :1]]),
        'as uint8': img.astype(np.float32) / 255,
        'is a Tensor': torch.from_numpy(img),
        'a batch goes in as a list': img[None],
    }
    for match, image in bad.items():
        with pytest.raises(ImageError, match=match):
            model(image)
    with pytest.raises(ImageError, match='does not exist'):
        model(str(tmp_path / 'missing.jpg'))
    broken = tmp_path / 'broken.jpg'
    broken.write_bytes(b'\xff\xd8 truncated')
    with pytest.raises(ImageError, match='not an image OpenCV can decode'):
        model(str(broken))
    # the check is on the padded size (the file records the divisor): the
    # demo pads to 32 >= the backbone's minimum 29, so 4x400 -> 1x128 runs
    assert model.size_divisor == 32 and model.min_size == 29
    assert model.check_size((4, 400)) == (1, 128)
    # a model that does not pad, or needs more: too small after the resize
    model.size_divisor = 1
    with pytest.raises(ImageTooSmallError,
                       match=r'makes 1x128.*; .* at least 29 pixels'):
        model(np.zeros((4, 400, 3), np.uint8))
    model.size_divisor = 32
    model.min_size = 64
    with pytest.raises(ImageTooSmallError, match='makes 1x128, padded to '
                       '32x128; .* at least 64 pixels'):
        model.check_size((4, 400))


# ------------------------------------------- the parts, against mmcv & co.
def test_resize_and_reading_are_mmcvs(images, tmp_path):
    import mmcv

    from pvt_mm.runtime import read_image, rescale_size, resize_image
    rng = np.random.RandomState(1)
    for (h, w) in [(100, 170), (90, 60), (480, 640), (801, 1333), (37, 999),
                   (512, 511)]:
        img = rng.randint(0, 256, (h, w, 3)).astype(np.uint8)
        for scale in [(128, 128), (1333, 800), (2048, 512), (640, 480)]:
            ref = mmcv.imrescale(img, scale)
            assert np.array_equal(resize_image(img, scale), ref), (h, w, scale)
            assert rescale_size((h, w), scale) == ref.shape[:2]
        ref = mmcv.imresize(img, (96, 80))
        assert np.array_equal(resize_image(img, (96, 80), keep_ratio=False),
                              ref)
    for name in IMAGE_SIZES:
        assert np.array_equal(read_image(str(images / name)),
                              mmcv.imread(str(images / name)))


def test_rle_is_pycocotools():
    mask_api = pytest.importorskip('pycocotools.mask')
    from pvt_mm.runtime import encode_rle
    rng = np.random.RandomState(0)
    masks = [np.zeros((5, 7), bool), np.ones((5, 7), bool),
             rng.rand(33, 21) > 0.5, rng.rand(300, 400) > 0.99]
    box = np.zeros((120, 90), bool)
    box[10:100, 5:80] = True
    masks.append(box)
    for m in masks:
        ref = mask_api.encode(np.asfortranarray(m.astype(np.uint8)))
        got = encode_rle(m)
        assert got == {'size': list(ref['size']),
                       'counts': ref['counts'].decode()}


def test_fingerprint(seg, det):
    """The config read without its custom imports (torch-free) gives the
    fingerprint the exporter recorded (also for a detector, whose build
    copies ``test_cfg`` into its head's config); an end-to-end graph's
    fingerprint also covers ``test_cfg`` (its post-processing), a
    network-only graph's does not."""
    from pvt_mm.runtime import load_config, model_fingerprint
    for export in (seg, det):
        assert (model_fingerprint(load_config(export.config), end2end=True)
                == export.meta['model_sha256'])
    cfg = load_config(seg.config)
    changed = load_config(seg.config, {'model.test_cfg.mode': 'slide'})
    assert (model_fingerprint(changed, end2end=True)
            != model_fingerprint(cfg, end2end=True))
    assert model_fingerprint(changed) == model_fingerprint(cfg)


def test_instance_masks_to_json_and_picture():
    """Mask outputs (two-stage files): RLE in the JSON, blended in the
    picture; the picture of a label map has the palette's colours."""
    from pvt_mm.runtime import Detections, Segmentation, draw, encode_rle
    masks = np.zeros((2, 40, 60), bool)
    masks[0, 5:20, 10:30] = True
    masks[1, 25:38, 40:58] = True
    dets = Detections(boxes=np.array([[10, 5, 30, 20], [40, 25, 58, 38]],
                                     np.float32),
                      scores=np.array([0.9, 0.2], np.float32),
                      labels=np.array([1, 0]), masks=masks)
    record = json.loads(json.dumps(dets.to_json()))
    assert record['masks'] == [encode_rle(m) for m in masks]
    assert len(record['bboxes']) == len(record['scores']) == 2
    image = np.zeros((40, 60, 3), np.uint8)
    picture = draw(image, dets, ['a', 'b'], PALETTE, score_thr=0.5)
    assert picture[12, 20].any()          # first mask blended in
    assert not picture[32, 50].any()      # second below --score-thr
    seg = Segmentation(label_map=np.array([[0, 1], [2, 3]]))
    picture = draw(np.zeros((2, 2, 3), np.uint8), seg, SEG_CLASSES, PALETTE)
    expected = (np.array(PALETTE)[:, ::-1] * 0.8).round().astype(np.uint8)
    assert np.array_equal(picture.reshape(4, 3), expected)
