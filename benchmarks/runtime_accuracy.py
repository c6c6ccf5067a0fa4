"""Accuracy of each runner and precision on the demo set: the trained demo
RetinaNet, Mask R-CNN and Semantic FPN (PVTv2-B0) evaluated with their
configs' own evaluators (COCO box / mask mAP, mIoU) through

- PyTorch fp32 (``test_step``) and PyTorch bf16 (``--amp`` on the CPU:
  the network in bf16, the post-processing in fp32);
- the end-to-end ONNX file in ONNX Runtime fp32, OpenVINO f32 and
  OpenVINO bf16 (pvt_mm.runtime, on the original validation images);

and the drop of each from PyTorch fp32 in points. A precision that drops
more than 0.5 points is not what ``--precision auto`` picks for that
family (pvt_mm.runtime.backends.BF16_FAMILIES holds the families it may
pick bf16 for, from this table; docs/deployment.md shows it).

    python benchmarks/runtime_accuracy.py [--models retinanet mask_rcnn sem_fpn]
        [--work-dir work_dirs/runtime_accuracy] [--threads 2]

Trains each demo config first (tools/train.py, a few minutes each on 2
cores) unless its checkpoint is already in the work dir, and generates
the demo data if ``data/demo`` lacks it. bf16 rows need a CPU with native
bf16 (AVX512-BF16 / AMX); elsewhere they are left out, and said so.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
MODELS = {
    'retinanet': ('retinanet_pvt_v2_b0_demo.py', 'RetinaNet',
                  ['coco/bbox_mAP']),
    'mask_rcnn': ('mask_rcnn_pvt_v2_b0_demo.py', 'MaskRCNN',
                  ['coco/bbox_mAP', 'coco/segm_mAP']),
    'sem_fpn': ('sem_fpn_pvt_v2_b0_demo.py', 'EncoderDecoder', ['mIoU']),
}


def trained_checkpoint(name: str, work_dir: str) -> str:
    """The demo config's last checkpoint in ``work_dir/name``, trained
    now if there is none."""
    folder = osp.join(work_dir, name)
    last = osp.join(folder, 'last_checkpoint')
    if not osp.isfile(last):
        config = osp.join(REPO, 'configs', 'demo', MODELS[name][0])
        print(f'training {config} into {folder} ...', flush=True)
        subprocess.run([sys.executable, osp.join(REPO, 'tools', 'train.py'),
                        config, '--work-dir', folder], cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL)
    with open(last) as f:
        return f.read().strip()


def to_det_sample(sample, result):
    """A runtime Detections as the dict CocoMetric reads."""
    import torch
    pred = dict(bboxes=torch.from_numpy(result.boxes),
                scores=torch.from_numpy(result.scores),
                labels=torch.from_numpy(result.labels))
    if result.masks is not None:
        pred['masks'] = torch.from_numpy(result.masks)
    return dict(img_id=sample.img_id, ori_shape=sample.ori_shape,
                pred_instances=pred)


def to_seg_sample(sample, result):
    import torch
    from mmseg.structures import SegDataSample
    from mmengine.structures import PixelData
    out = SegDataSample(metainfo=sample.metainfo)
    out.gt_sem_seg = sample.gt_sem_seg
    out.pred_sem_seg = PixelData(data=torch.from_numpy(
        result.label_map[None]))
    return out


def evaluate(run_batch, dataloader, evaluator) -> dict:
    start = time.perf_counter()
    for data in dataloader:
        evaluator.process(data_samples=run_batch(data), data_batch=data)
    metrics = evaluator.evaluate(len(dataloader.dataset))
    metrics['seconds_per_image'] = ((time.perf_counter() - start)
                                    / len(dataloader.dataset))
    return metrics


def runners(model, onnx: str, is_seg: bool, bf16: bool, threads: int):
    """``{runner name: function(data batch) -> data samples}``."""
    import torch

    from pvt_mm.engine.cpu_bf16 import disable_cpu_bf16, enable_cpu_bf16
    from pvt_mm.runtime import End2EndModel
    convert = to_seg_sample if is_seg else to_det_sample

    def torch_runner(use_bf16):
        def run(data):
            if use_bf16:
                enable_cpu_bf16(model)
            try:
                with torch.no_grad():
                    return model.test_step(data)
            finally:
                disable_cpu_bf16(model)
        return run

    def runtime_runner(backend, precision):
        e2e = End2EndModel(onnx, backend=backend, precision=precision,
                           num_threads=threads)
        assert (e2e.choice.backend, e2e.choice.precision) == (backend,
                                                             precision)

        def run(data):
            samples = data['data_samples']
            results = e2e.predict([s.img_path for s in samples])
            return [convert(s, r) for s, r in zip(samples, results)]
        return run

    out = {'PyTorch fp32': torch_runner(False)}
    if bf16:
        out['PyTorch bf16'] = torch_runner(True)
    out['ONNX Runtime fp32'] = runtime_runner('onnxruntime', 'fp32')
    out['OpenVINO fp32'] = runtime_runner('openvino', 'fp32')
    if bf16:
        out['OpenVINO bf16'] = runtime_runner('openvino', 'bf16')
    return out


def measure(name: str, work_dir: str, threads: int, bf16: bool) -> dict:
    from pvt_mm.deploy import load_model
    from pvt_mm.deploy.end2end.export import export_end2end
    from pvt_mm.engine.runner import build_runner, load_config, prepare
    config, family, keys = MODELS[name]
    checkpoint = trained_checkpoint(name, work_dir)
    cfg = load_config(osp.join(REPO, 'configs', 'demo', config),
                      work_dir=osp.join(work_dir, name, 'eval'),
                      launcher='none')
    cfg.test_dataloader.batch_size = 1
    prepare(cfg, splits=('test', ))
    runner = build_runner(cfg)
    dataloader, evaluator = runner.test_dataloader, runner.test_loop.evaluator
    model = load_model(cfg, checkpoint)
    onnx = osp.join(work_dir, name, 'end2end.onnx')
    export_end2end(model, onnx, shape=(128, 128), checkpoint=checkpoint)
    rows = {}
    for runner_name, run in runners(model, onnx, name == 'sem_fpn', bf16,
                                    threads).items():
        m = evaluate(run, dataloader, evaluator)
        rows[runner_name] = {k: float(m[k]) for k in keys}
        rows[runner_name]['seconds_per_image'] = m['seconds_per_image']
        print(f'{name} {runner_name}: {rows[runner_name]}', flush=True)
    return dict(family=family, metrics=keys, rows=rows,
                images=len(dataloader.dataset))


def points(metric: str, value: float) -> float:
    """COCO mAP is in [0, 1], mIoU in percent: both as points (x100)."""
    return value * 100 if metric.startswith('coco/') else value


def table(results: dict) -> str:
    lines = ['| model | runner | metric | value | drop from PyTorch fp32 '
             '(points) | s / image |', '|---|---|---|---:|---:|---:|']
    for name, res in results.items():
        ref = res['rows']['PyTorch fp32']
        for runner_name, row in res['rows'].items():
            for key in res['metrics']:
                drop = points(key, ref[key]) - points(key, row[key])
                lines.append(
                    f'| {name} | {runner_name} | {key.split("/")[-1]} | '
                    f'{points(key, row[key]):.2f} | {drop:+.2f} | '
                    f'{row["seconds_per_image"]:.3f} |')
    return '\n'.join(lines)


def in_subprocess(name: str, args) -> dict:
    """One model's rows from a fresh process (each model's evaluation in
    its own interpreter: a second model in the same process ended it
    without a word, in two runs)."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        out = osp.join(tmp, 'rows.json')
        subprocess.run([sys.executable, osp.abspath(__file__), '--models',
                        name, '--work-dir', args.work_dir, '--threads',
                        str(args.threads), '--json', out], check=True)
        with open(out) as f:
            return json.load(f)[name]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--models', nargs='+', default=list(MODELS),
                        choices=list(MODELS))
    parser.add_argument('--work-dir', default=osp.join(REPO, 'work_dirs',
                                                       'runtime_accuracy'))
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--json', help='also write the results here')
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    from pvt_mm.data.demo_data import demo_data_ready, make_demo_data
    from pvt_mm.runtime.backends import cpu_has_bf16
    os.chdir(REPO)  # the demo configs' data paths are relative to it
    if not demo_data_ready():
        make_demo_data()
    bf16 = cpu_has_bf16()
    work_dir = osp.abspath(args.work_dir)
    if len(args.models) == 1:
        results = {args.models[0]: measure(args.models[0], work_dir,
                                           args.threads, bf16)}
    else:
        results = {name: in_subprocess(name, args) for name in args.models}
    print()
    print(table(results))
    if not bf16:
        print('(no bf16 rows: this CPU has no native bf16)')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()
