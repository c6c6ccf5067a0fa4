"""The demo models evaluated twice, in PyTorch and through their ONNX
export in ONNX Runtime: COCO box mAP (RetinaNet + PVTv2-B0) and mIoU
(Semantic FPN + PVTv2-B0) agree to three decimals. The models are briefly
trained on generated data first, so the metrics are not those of an
untrained model. ``slow``: about two minutes on 2 CPU cores."""
import os.path as osp

import pytest
import torch

from conftest import demo_runner

pytest.importorskip('onnxruntime')


@pytest.fixture(scope='module')
def demo_data(tmp_path_factory):
    from pvt_mm.datasets.demo_data import make_demo_data
    return make_demo_data(str(tmp_path_factory.mktemp('demo_data')),
                          num_train=64, num_val=16)


def evaluate(model, dataloader, evaluator) -> dict:
    for data in dataloader:
        with torch.no_grad():
            evaluator.process(data_samples=model.test_step(data),
                              data_batch=data)
    return evaluator.evaluate(len(dataloader.dataset))


@pytest.mark.slow
@pytest.mark.parametrize('config,sub,options,metric', [
    ('retinanet_pvt_v2_b0_demo.py', 'coco', {'train_cfg.max_epochs': 3},
     'coco/bbox_mAP'),
    ('sem_fpn_pvt_v2_b0_demo.py', 'ade', {'train_cfg.max_iters': 40},
     'mIoU'),
])
def test_demo_metrics_same_in_onnx_runtime(tmp_path, demo_data, config, sub,
                                           options, metric):
    from pvt_mm.deploy import ORTModel, export_onnx
    with demo_runner(tmp_path, config,
                     {'data_root': osp.join(demo_data, sub), **options}
                     ) as runner:
        runner.train()
        model = runner.model.eval()
        model.cfg = runner.cfg
        evaluator = runner.val_loop.evaluator
        ours = evaluate(model, runner.val_dataloader, evaluator)[metric]
        path = str(tmp_path / 'model.onnx')
        export_onnx(model, path, shape=(128, 128))
        ort = evaluate(ORTModel(path, model), runner.val_dataloader,
                       evaluator)[metric]
    assert ours > 0.01, f'{metric} {ours}: the model did not learn at all'
    assert round(ours, 3) == round(ort, 3), (ours, ort)
