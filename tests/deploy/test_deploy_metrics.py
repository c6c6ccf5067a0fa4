"""The demo models evaluated three times: in PyTorch, through their
network-only ONNX export in ONNX Runtime (``ORTModel``: post-processing in
PyTorch), and through their end-to-end export run by the torch-free
runtime (``pvt_mm.runtime.End2EndModel``, fed the validation set's original
image files, which it reads and resizes itself). COCO box mAP (RetinaNet +
PVTv2-B0), mIoU (Semantic FPN + PVTv2-B0) and COCO mask mAP (Mask R-CNN +
PVTv2-B0), and every other metric their evaluators report, agree to three
decimals. The models are briefly trained on generated data first, so the
metrics are not those of an untrained model. ``slow``: about ten minutes on
2 CPU cores, most of it training Mask R-CNN."""
import os.path as osp

import pytest
import torch

from helpers import demo_runner

pytest.importorskip('onnxruntime')


@pytest.fixture(scope='module')
def demo_data(tmp_path_factory):
    from pvt_mm.data.demo_data import make_demo_data
    return make_demo_data(str(tmp_path_factory.mktemp('demo_data')),
                          num_train=64, num_val=16)


def evaluate(model, dataloader, evaluator) -> dict:
    for data in dataloader:
        with torch.no_grad():
            evaluator.process(data_samples=model.test_step(data),
                              data_batch=data)
    return evaluator.evaluate(len(dataloader.dataset))


def with_runtime_predictions(runtime, data_samples) -> list:
    """The dataloader's data samples (ground truth, metainfo) with the
    runtime's results on their original image files as the predictions
    the evaluators read: mmdet's ``pred_instances`` (boxes, scores, labels,
    masks), mmseg's ``pred_sem_seg``."""
    from mmengine.structures import InstanceData, PixelData

    from pvt_mm.runtime import Segmentation
    results = runtime([s.img_path for s in data_samples])
    for sample, res in zip(data_samples, results):
        if isinstance(res, Segmentation):
            assert res.label_map.shape == tuple(sample.ori_shape)
            sample.pred_sem_seg = PixelData(
                data=torch.from_numpy(res.label_map)[None])
            continue
        pred = InstanceData(bboxes=torch.from_numpy(res.boxes),
                            scores=torch.from_numpy(res.scores),
                            labels=torch.from_numpy(res.labels))
        if res.masks is not None:
            assert res.masks.shape[1:] == tuple(sample.ori_shape)
            pred.masks = torch.from_numpy(res.masks)
        sample.pred_instances = pred
    return data_samples


def evaluate_runtime(runtime, dataloader, evaluator) -> dict:
    for data in dataloader:
        evaluator.process(
            data_samples=with_runtime_predictions(runtime,
                                                  data['data_samples']),
            data_batch=data)
    return evaluator.evaluate(len(dataloader.dataset))


@pytest.mark.slow
@pytest.mark.parametrize('config,sub,options,metric', [
    ('retinanet_pvt_v2_b0_demo.py', 'coco', {'train_cfg.max_epochs': 3},
     'coco/bbox_mAP'),
    ('sem_fpn_pvt_v2_b0_demo.py', 'ade', {'train_cfg.max_iters': 40},
     'mIoU'),
    ('mask_rcnn_pvt_v2_b0_demo.py', 'coco', {'train_cfg.max_epochs': 3},
     'coco/segm_mAP'),
])
def test_demo_metrics_same_in_onnx_runtime(tmp_path, demo_data, config, sub,
                                           options, metric):
    from pvt_mm.deploy import ORTModel, export_onnx
    from pvt_mm.deploy.end2end.export import export_end2end
    from pvt_mm.runtime import End2EndModel
    with demo_runner(tmp_path, config,
                     {'data_root': osp.join(demo_data, sub), **options}
                     ) as runner:
        runner.train()
        model = runner.model.eval()
        model.cfg = runner.cfg
        evaluator = runner.val_loop.evaluator
        ours = evaluate(model, runner.val_dataloader, evaluator)
        path = str(tmp_path / 'model.onnx')
        export_onnx(model, path, shape=(128, 128))
        ort = evaluate(ORTModel(path, model), runner.val_dataloader,
                       evaluator)
        e2e_path = str(tmp_path / 'end2end.onnx')
        export_end2end(model, e2e_path, shape=(128, 128))
        runtime = End2EndModel(e2e_path, num_threads=1, precision='fp32')
        e2e = evaluate_runtime(runtime, runner.val_dataloader, evaluator)
    print(f'\n[metrics] {config}: PyTorch / network-only ONNX / end-to-end '
          f'runtime: ' + ', '.join(f'{k} {ours[k]:.4f} / {ort[k]:.4f} / '
                                   f'{e2e[k]:.4f}' for k in ours))
    assert ours[metric] > 0.01, (
        f'{metric} {ours[metric]}: the model did not learn at all')
    # the headline metric and the others the evaluator gives (mAP at
    # other IoUs / sizes; aAcc, mAcc), to three decimals
    assert set(ours) == set(ort) == set(e2e)
    for key in ours:
        assert round(ours[key], 3) == round(ort[key], 3), (key, ours, ort)
        assert round(ours[key], 3) == round(e2e[key], 3), (key, ours, e2e)
