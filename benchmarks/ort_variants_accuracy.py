"""The demo detector's COCO box metrics in PyTorch and through each ONNX
Runtime file (portable, fused, int8 variants), with the same evaluator and
validation images: what fused attention and int8 quantization cost in
accuracy.

    python tools/misc/demo.py                                    # trains work_dirs/demo
    python benchmarks/ort_variants_accuracy.py work_dirs/demo/epoch_6.pth

The int8 variants differ in their quantization settings
(``pvt_mm.deploy.optimize.quantize_int8``): per tensor or per output
channel, MatMul weights only or MatMul + Conv (dynamic), and the default
with the neck's and head's convolutions quantized statically, calibrated
on ``--calibrate`` training images read with the test pipeline.
"""
import argparse
import json
import os
import os.path as osp
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(REPO, 'configs', 'demo', 'retinanet_pvt_v2_b0_demo.py')

#: name -> quantize_int8 options (beyond pvt_mm.deploy.optimize's
#: INT8_DEFAULTS: MatMul weights, per channel)
INT8 = {
    'int8-per-channel': dict(),
    'int8-per-tensor': dict(per_channel=False),
    'int8-matmul+conv': dict(op_types=('MatMul', 'Conv')),
}


def evaluate(model, dataloader, evaluator) -> dict:
    import torch
    start = time.perf_counter()
    for data in dataloader:
        with torch.no_grad():
            evaluator.process(data_samples=model.test_step(data),
                              data_batch=data)
    metrics = evaluator.evaluate(len(dataloader.dataset))
    metrics['seconds'] = time.perf_counter() - start
    return metrics


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('checkpoint')
    p.add_argument('--config', default=CONFIG)
    p.add_argument('--out-dir', default=osp.join(REPO, 'work_dirs',
                                                 'ort_variants'))
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--calibrate', type=int, default=32,
                   help='training images for the calibrated int8 file')
    p.add_argument('--json', help='write the metrics here')
    args = p.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    from pvt_mm.engine.runner import build_runner, load_config, prepare
    from pvt_mm.deploy import ORTModel, export_onnx, load_model
    from pvt_mm.deploy.optimize import (calibration_batches,
                                        calibration_feeds,
                                        export_ort_variants)
    checkpoint = osp.abspath(args.checkpoint)
    out_dir = osp.abspath(args.out_dir)
    os.chdir(REPO)  # the config's data paths are relative to the repo
    cfg = load_config(args.config, work_dir=out_dir, launcher='none')
    prepare(cfg, splits=('val', ))
    runner = build_runner(cfg)
    dataloader, evaluator = runner.val_dataloader, runner.val_loop.evaluator
    model = load_model(cfg, checkpoint)
    plain = osp.join(out_dir, 'demo.onnx')
    shape = (128, 128)
    export_onnx(model, plain, shape=shape, checkpoint=checkpoint)
    files = {'ort-portable': plain}
    files['ort-fused'] = export_ort_variants(
        model, plain, variants=('fused', ), shape=shape,
        checkpoint=checkpoint)['fused']
    for name, options in INT8.items():
        files['ort-' + name] = export_ort_variants(
            model, osp.join(out_dir, name + '.onnx'), variants=('int8', ),
            shape=shape, checkpoint=checkpoint,
            int8_options=options)['int8']
    feeds = calibration_feeds(model, calibration_batches(cfg, args.calibrate))
    files['ort-int8-calibrated-convs'] = export_ort_variants(
        model, osp.join(out_dir, 'calibrated.onnx'), variants=('int8', ),
        shape=shape, checkpoint=checkpoint,
        int8_options=dict(calibration=feeds))['int8']
    results = {'pytorch': evaluate(model, dataloader, evaluator)}
    for name, path in files.items():
        results[name] = evaluate(ORTModel(path, model), dataloader, evaluator)
    keys = ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75')
    print(f'\n{len(dataloader.dataset)} validation images, '
          f'{args.threads} thread(s)')
    print('| model | ' + ' | '.join(k.split('/')[-1] for k in keys)
          + ' | seconds |')
    print('|---|' + '---:|' * (len(keys) + 1))
    for name, m in results.items():
        print(f'| {name} | ' + ' | '.join(f'{m[k]:.3f}' for k in keys)
              + f' | {m["seconds"]:.1f} |')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()
