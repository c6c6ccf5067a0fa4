"""docs/your_dataset.md, run as written: its ```bash commands in order,
from a folder laid out like the repository, with the config of its
```python block saved as my_retinanet.py; the shown error output must be
what the check prints. The pretrained backbone comes from torch hub's
cache (official layout, random weights), the offline path the guide
points to, as this machine has no internet."""
import json
import os
import os.path as osp
import re
import shlex
import subprocess
import sys

import pytest
import torch

from helpers import REPO_ROOT, official_pvt_v2_state_dict

GUIDE = osp.join(REPO_ROOT, 'docs', 'your_dataset.md')


def blocks(kind: str):
    text = open(GUIDE).read()
    return re.findall(rf'```{kind}\n(.*?)```', text, flags=re.S)


@pytest.mark.slow
def test_the_guide_runs_as_written(tmp_path):
    (config, ) = blocks('python')
    (shown_error, ) = blocks('text')
    commands = [c.strip() for c in blocks('bash')]
    assert len(commands) == 6, commands
    for folder in ('tools', 'configs'):
        os.symlink(osp.join(REPO_ROOT, folder), tmp_path / folder)
    (tmp_path / 'my_retinanet.py').write_text(config)
    cache = tmp_path / 'torch_home' / 'hub' / 'checkpoints'
    cache.mkdir(parents=True)
    torch.save(official_pvt_v2_state_dict('pvt_v2_b2'),
               cache / 'pvt_v2_b2.pth')
    env = dict(os.environ, TORCH_HOME=str(tmp_path / 'torch_home'))

    def run(command):
        argv = shlex.split(command)
        assert argv[0] == 'python'
        return subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path,
                              env=env, capture_output=True, text=True)

    make, check, check_without_classes, train, test, infer = commands
    for command in (make, check):
        res = run(command)
        assert res.returncode == 0, res.stderr[-3000:]
    assert 'check_dataset: OK' in res.stdout
    res = run(check_without_classes)
    assert res.returncode == 1
    for line in shown_error.splitlines():
        if line.strip() != '...':
            assert line in res.stderr, (line, res.stderr)
    for command in (train, test, infer):
        res = run(command)
        assert res.returncode == 0, (command, res.stderr[-5000:])
    work = tmp_path / 'work_dirs' / 'my_retinanet'
    assert (work / 'epoch_1.pth').is_file()
    metrics = json.loads((work / 'metrics.json').read_text())['metrics']
    assert 'coco/bbox_mAP' in metrics
    vis = sorted(os.listdir(tmp_path / 'outputs' / 'my_shapes' / 'vis'))
    assert vis == ['000000.jpg', '000001.jpg']
    preds = json.loads((tmp_path / 'outputs' / 'my_shapes' / 'preds' /
                        '000000.json').read_text())
    assert set(preds.get('classes', ('box', 'ball', 'wedge'))) <= {
        'box', 'ball', 'wedge'}
