"""Runs over folders as a deployment job makes them: a folder with good
images and one unreadable ``.jpg``. ``python -m pvt_mm.runtime`` and
``tools/misc/infer.py`` (PyTorch and end-to-end files) report the bad one
in one line, write the others, end with a summary and exit code 1; a
second run with ``--resume`` redoes nothing that was finished."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers import REPO_ROOT, tiny_dense_config, tiny_dense_model

cv2 = pytest.importorskip('cv2')
pytest.importorskip('onnxruntime')
pytestmark = pytest.mark.usefixtures('fast_config_parsing', 'one_thread')
CONFIG = 'retinanet_pvt_v2_b0_demo.py'


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp('photos')
    rng = np.random.RandomState(0)
    for name in ('a.jpg', 'c.jpg'):
        img = rng.randint(0, 255, (90, 120, 3)).astype(np.uint8)
        cv2.rectangle(img, (10, 10), (60, 50), (30, 200, 40), -1)
        cv2.imwrite(str(root / name), img)
    (root / 'b.jpg').write_bytes(b'\xff\xd8\xff\xe0 not really a jpeg')
    return root


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    from pvt_mm.deploy.end2end.export import export_end2end
    folder = tmp_path_factory.mktemp('model')
    model = tiny_dense_model(CONFIG, 'pvtv2')
    model.dataset_meta = dict(classes=['rectangle', 'ellipse', 'triangle'])
    cfg = tiny_dense_config(CONFIG, 'pvtv2')
    cfg.dump(str(folder / 'tiny.py'))
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(dataset_meta=model.dataset_meta)),
               str(folder / 'tiny.pth'))
    onnx = str(folder / 'tiny.onnx')
    export_end2end(model, onnx, shape=(64, 64), verify=False)
    return dict(config=str(folder / 'tiny.py'), ckpt=str(folder / 'tiny.pth'),
                onnx=onnx)


def run(*args):
    return subprocess.run([sys.executable, *args], capture_output=True,
                          text=True, cwd=REPO_ROOT, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))


def check_run(res, out, tag):
    assert res.returncode == 1, res.stderr[-3000:]
    assert 'Traceback' not in res.stderr
    skipped = [ln for ln in res.stderr.splitlines() if 'skipped' in ln]
    assert len(skipped) == 1 and 'b.jpg' in skipped[0], res.stderr
    assert 'not an image OpenCV can decode' in skipped[0]
    assert sorted(os.listdir(out / 'preds')) == ['a.json', 'c.json']
    assert sorted(os.listdir(out / 'vis')) == ['a.jpg', 'c.jpg']
    summary = res.stdout.strip().splitlines()[-1]
    assert summary.startswith(f'[{tag}] 2 image(s)')
    assert '1 skipped (unreadable): b.jpg' in summary


def test_runtime_cli_goes_on_and_resumes(folder, exported, tmp_path):
    out = tmp_path / 'out'
    res = run('-m', 'pvt_mm.runtime', exported['onnx'], str(folder),
              '--out-dir', str(out))
    check_run(res, out, 'pvt_mm.runtime')
    assert '2/3 images' in res.stderr or '3/3 images' in res.stderr
    pred = json.load(open(out / 'preds' / 'a.json'))
    assert pred['runtime']['precision'] in ('fp32', 'bf16')  # auto
    stamp = os.path.getmtime(out / 'preds' / 'a.json')
    res = run('-m', 'pvt_mm.runtime', exported['onnx'], str(folder),
              '--out-dir', str(out), '--resume')
    assert '2 of 3 images already done, skipped' in res.stdout
    assert os.path.getmtime(out / 'preds' / 'a.json') == stamp
    # another precision or file is not "done"
    res = run('-m', 'pvt_mm.runtime', exported['onnx'], str(folder),
              '--out-dir', str(out), '--resume', '--backend', 'onnxruntime')
    if json.load(open(out / 'preds' / 'a.json'))['runtime'] != pred[
            'runtime']:
        assert 'already done' not in res.stdout


@pytest.mark.parametrize('mode', ['pytorch', 'end2end'])
def test_infer_goes_on_and_resumes(folder, exported, tmp_path, mode):
    out = tmp_path / 'out'
    tool = os.path.join(REPO_ROOT, 'tools', 'misc', 'infer.py')
    args = ([exported['config'], exported['ckpt']] if mode == 'pytorch'
            else [exported['config'], '--onnx', exported['onnx']])
    res = run(tool, *args, str(folder), '--out-dir', str(out))
    check_run(res, out, 'infer')
    stamp = os.path.getmtime(out / 'preds' / 'c.json')
    res = run(tool, *args, str(folder), '--out-dir', str(out), '--resume')
    assert '2 of 3 images already done, skipped' in res.stdout
    assert os.path.getmtime(out / 'preds' / 'c.json') == stamp
    runtime = json.load(open(out / 'preds' / 'c.json'))['runtime']
    if mode == 'pytorch':
        assert runtime == dict(backend='pytorch', precision='fp32')
    else:
        assert runtime['precision'] in ('fp32', 'bf16')  # auto


def test_infer_error_is_one_line(exported, folder, tmp_path):
    tool = os.path.join(REPO_ROOT, 'tools', 'misc', 'infer.py')
    res = run(tool, exported['config'], str(tmp_path / 'missing.pth'),
              str(folder), '--out-dir', str(tmp_path / 'o'))
    assert res.returncode == 2
    assert 'Traceback' not in res.stderr
    assert res.stderr.strip().startswith('infer.py: error:')
    assert len(res.stderr.strip().splitlines()) == 1
