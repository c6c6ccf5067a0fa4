"""Each family added for the published rows (ATSS, Cascade Mask R-CNN,
Sparse R-CNN, DETR; Trans2Seg) learns: its demo config (configs/demo/, the
real config with PVTv2-B0 from scratch and the demo data) is evaluated
untrained, trained on the generated demo data, and evaluated again; the
trained box mAP / mIoU must be clearly above the untrained one.
``slow``: a few minutes per family on 2 CPU cores (``make test-slow``)."""
import os.path as osp

import pytest

from conftest import demo_runner



@pytest.fixture(scope='module')
def demo_data(tmp_path_factory):
    from pvt_mm.datasets.demo_data import make_demo_data
    return make_demo_data(str(tmp_path_factory.mktemp('demo_data')))


def _keep_all_boxes(cfg):
    """An untrained detector scores every box near its prior, below the
    test threshold; keep all boxes so its mAP is measured (both runs)."""
    test_cfg = cfg.model.get('test_cfg') or {}
    for node in (test_cfg, test_cfg.get('rcnn') or {}):
        if 'score_thr' in node:
            node['score_thr'] = 0.0


# Measured, not yet learning (open in issue 11). strict: a demo that starts
# to learn fails here until its mark is removed.
NOT_LEARNING_YET = {
    'detr_pvt_v2_b0_demo.py':
        'measured box mAP 0.000 -> 0.000 after 12 epochs (and 0.000 with a '
        'stride-16 map, 10 queries, lr 3e-4; and after 36 epochs at lr 4e-4 '
        'with gradient clip 1.0: box losses fall, classification stays at '
        '~1.27; a ResNet-18 in its place ends the same): DETR from scratch '
        'does not learn on the demo data in minutes',
}


@pytest.mark.slow
@pytest.mark.parametrize('config', [
    pytest.param(name, marks=pytest.mark.xfail(strict=True,
                                               reason=NOT_LEARNING_YET[name]))
    if name in NOT_LEARNING_YET else name
    for name in ('atss_pvt_v2_b0_demo.py',
                 'cascade_mask_rcnn_pvt_v2_b0_demo.py',
                 'sparse_rcnn_pvt_v2_b0_demo.py', 'detr_pvt_v2_b0_demo.py')])
def test_family_learns(tmp_path, demo_data, config):
    before, after = train_and_evaluate(
        tmp_path, config, osp.join(demo_data, 'coco') + '/', 'coco/bbox_mAP',
        adapt=_keep_all_boxes)
    print(f'{config}: bbox_mAP untrained {before:.3f}, trained {after:.3f}')
    assert before < 0.05
    assert after > before + 0.1, (before, after)


@pytest.mark.slow
def test_trans2seg_learns(tmp_path, demo_data):
    before, after = train_and_evaluate(
        tmp_path, 'trans2seg_pvt_v2_b0_demo.py', osp.join(demo_data, 'ade'),
        'mIoU')
    print(f'Trans2Seg demo: mIoU untrained {before:.1f}, trained {after:.1f}')
    assert after > before + 15, (before, after)


def train_and_evaluate(tmp_path, config, data_root, metric, adapt=None):
    """``metric`` of the demo config's model untrained and after its
    schedule, both on the demo validation split."""
    with demo_runner(tmp_path, config, {'data_root': data_root},
                     adapt) as runner:
        runner.model.init_weights()
        before = runner.val()[metric]
        runner.train()
        return before, runner.val()[metric]
