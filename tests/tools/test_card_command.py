"""The README's first command, as a user with COCO and a network runs it:

    python tools/train.py configs/retinanet_pvt_v2_b2_coco.py

run unchanged from a folder laid out like the repository, on COCO-layout
data (the demo generator's scenes under COCO 2017's file names and COCO's
80 categories), with the config's own pretrained URL served over
127.0.0.1 in the official PVTv2 layout (only its host is this test's),
until two training iterations are logged. The only options are
``data_root`` and the URL's host."""
import os
import os.path as osp
import re
import subprocess
import sys
import time

import torch

from helpers import REPO_ROOT, LoopbackFiles, official_pvt_v2_state_dict
from pvt_mm.data.demo_data import make_demo_data
from pvt_mm.engine.runner import load_config

CONFIG = 'configs/retinanet_pvt_v2_b2_coco.py'
#: The end of the first epoch (4 images, 2 per batch): two iterations.
SECOND_ITER = re.compile(r'Epoch\(train\)\s+\[1\]\[2/2\].*\bloss: ([0-9.]+)')
TIMEOUT_S = 900


def test_readme_train_command_with_weights_by_url(tmp_path):
    readme = open(osp.join(REPO_ROOT, 'README.md')).read()
    assert f'python tools/train.py {CONFIG}' in readme
    url = load_config(osp.join(REPO_ROOT, CONFIG)).model.backbone.init_cfg[
        'checkpoint']
    assert url == ('https://github.com/whai362/PVT/releases/download/v2/'
                   'pvt_v2_b2.pth')
    for folder in ('tools', 'configs'):
        os.symlink(osp.join(REPO_ROOT, folder), tmp_path / folder)
    data = make_demo_data(str(tmp_path / 'data'), num_train=4, num_val=1,
                          classes='coco', coco2017=True)
    weights = tmp_path / 'pvt_v2_b2.pth'
    torch.save(official_pvt_v2_state_dict('pvt_v2_b2'), weights)
    env = dict(os.environ, TORCH_HOME=str(tmp_path / 'torch_home'),
               PYTHONUNBUFFERED='1')
    with LoopbackFiles() as server:
        path = url[len('https://github.com'):]
        server.routes[path] = weights.read_bytes()
        loopback = server.on_loopback(url)
        command = [sys.executable, 'tools/train.py', CONFIG, '--cfg-options',
                   f'data_root={data}/coco/',
                   f'model.backbone.init_cfg.checkpoint={loopback}']
        proc = subprocess.Popen(command, cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        lines, loss, start = [], None, time.time()
        try:
            for line in proc.stdout:
                lines.append(line)
                match = SECOND_ITER.search(line)
                if match:
                    loss = float(match[1])
                    break
                assert time.time() - start < TIMEOUT_S, ''.join(lines[-30:])
        finally:
            proc.kill()
            proc.wait()
        log = ''.join(lines)
        assert loss is not None, log[-5000:]
        assert server.requests == [path]  # downloaded once
    assert 0 < loss < 100
    loaded = re.search(r'PVTv2: loaded (\d+)/(\d+) tensors from (\S+) '
                       r'\(PVTv2 official PVTv2\)', log)
    assert loaded, log[-5000:]
    assert loaded[1] == loaded[2]  # every backbone tensor
    assert loaded[3] == loopback
    assert (tmp_path / 'torch_home' / 'hub' / 'checkpoints' /
            'pvt_v2_b2.pth').read_bytes() == weights.read_bytes()
    assert osp.isdir(tmp_path / 'work_dirs' / 'retinanet_pvt_v2_b2_coco')
