"""Seconds per image of each runner and precision, whole models at their
recipe's test size on this machine's CPU:

- PyTorch fp32 (``test_step``) and PyTorch bf16 (``--amp`` without a GPU:
  the network in bf16, the post-processing in fp32);
- the end-to-end ONNX file in ONNX Runtime fp32, OpenVINO f32 and OpenVINO
  bf16 (pvt_mm.runtime, from the decoded image to the final results);

per model (RetinaNet-B2 and Mask R-CNN-B2 on an 800x1333 image, Semantic
FPN-B2 on a 512x683 one: what the recipes' test resizes give a 3:4 or
4:3 photo) and thread count, with the speed-up over PyTorch fp32, the
model's GFLOPs (pvt_mm.analysis, multiply-accumulates x 2) and the
fraction of this machine's matmul rate at that precision and thread count
that the whole model reaches. Random weights (speed only; accuracy per
runner: benchmarks/runtime_accuracy.py).

    python benchmarks/bench_runtimes.py [--models retinanet mask_rcnn sem_fpn]
        [--threads 1 2] [--repeats 3] [--quick]

``--quick``: the demo configs (PVTv2-B0, 128x128), for a smoke test.
bf16 rows need a CPU with native bf16 (AVX512-BF16 / AMX).
"""
import argparse
import json
import os.path as osp
import platform
import statistics
import tempfile
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: name -> (config, image (H, W))
MODELS = {
    'retinanet': ('retinanet_pvt_v2_b2_coco.py', (800, 1333)),
    'mask_rcnn': ('mask_rcnn_pvt_v2_b2_coco.py', (800, 1333)),
    'sem_fpn': ('sem_fpn_pvt_v2_b2_ade20k_40k.py', (512, 683)),
}
QUICK = {
    'retinanet': ('demo/retinanet_pvt_v2_b0_demo.py', (128, 128)),
    'mask_rcnn': ('demo/mask_rcnn_pvt_v2_b0_demo.py', (128, 128)),
    'sem_fpn': ('demo/sem_fpn_pvt_v2_b0_demo.py', (128, 128)),
}


def cpu_name() -> str:
    if osp.isfile('/proc/cpuinfo'):
        for line in open('/proc/cpuinfo'):
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    return platform.processor() or 'unknown CPU'


def isa() -> str:
    flags = set()
    if osp.isfile('/proc/cpuinfo'):
        for line in open('/proc/cpuinfo'):
            if line.startswith('flags'):
                flags = set(line.split(':', 1)[1].split())
                break
    have = [name for flag, name in (('avx512f', 'AVX-512'),
                                    ('avx512_bf16', 'AVX512-BF16'),
                                    ('amx_bf16', 'AMX-BF16'))
            if flag in flags]
    return ', '.join(have) or 'no AVX-512'


def matmul_rate(dtype, threads: int, n: int = 2048) -> float:
    """GFLOP/s of an n x n matmul in ``dtype`` on ``threads`` threads."""
    import torch
    torch.set_num_threads(threads)
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n ** 3 / min(times) / 1e9


def timed(fn, repeats: int) -> float:
    fn()  # warm-up (first-call allocations, OpenVINO's first infer)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def torch_batch(model, image):
    """The image as the test pipeline gives it at this size (already the
    recipe's test size: no resize) with its meta information."""
    import torch
    from pvt_mm.analysis import fake_data
    scope = 'mmseg' if hasattr(model, 'decode_head') else 'mmdet'
    data = fake_data(scope, image.shape[:2])
    data['inputs'] = [torch.from_numpy(image).permute(2, 0, 1).contiguous()]
    return data


def measure(name: str, config: str, hw, threads_list, repeats: int,
            bf16: bool, work: str) -> list:
    import numpy as np
    import torch

    from pvt_mm.analysis import TensorForward, count_macs, fake_batch
    from pvt_mm.deploy import load_model
    from pvt_mm.deploy.end2end.export import export_end2end
    from pvt_mm.engine.cpu_bf16 import disable_cpu_bf16, enable_cpu_bf16
    from pvt_mm.runtime import End2EndModel
    model = load_model(osp.join(REPO, 'configs', config))
    scope = 'mmseg' if hasattr(model, 'decode_head') else 'mmdet'
    batch = fake_batch(model, scope, hw)
    macs = count_macs(TensorForward(model, batch['data_samples']),
                      batch['inputs'])
    onnx = osp.join(work, f'{name}.onnx')
    export_end2end(model, onnx, shape=hw, verify=False)
    rng = np.random.RandomState(0)
    image = rng.randint(0, 256, (*hw, 3)).astype(np.uint8)
    data = torch_batch(model, image)
    rows = []
    for threads in threads_list:
        torch.set_num_threads(threads)

        def run_torch(use_bf16):
            def step():
                with torch.no_grad():
                    model.test_step(data)
            if use_bf16:
                enable_cpu_bf16(model)
            try:
                return timed(step, repeats)
            finally:
                disable_cpu_bf16(model)

        cells = {'PyTorch fp32': run_torch(False)}
        if bf16:
            cells['PyTorch bf16'] = run_torch(True)
        combos = [('ONNX Runtime fp32', 'onnxruntime', 'fp32'),
                  ('OpenVINO fp32', 'openvino', 'fp32')]
        if bf16:
            combos.append(('OpenVINO bf16', 'openvino', 'bf16'))
        for label, backend, precision in combos:
            e2e = End2EndModel(onnx, backend=backend, precision=precision,
                               num_threads=threads)
            cells[label] = timed(lambda: e2e.predict(image), repeats)
            del e2e
        peak = {'fp32': matmul_rate(torch.float32, threads)}
        if bf16:
            peak['bf16'] = matmul_rate(torch.bfloat16, threads)
        base = cells['PyTorch fp32']
        for label, seconds in cells.items():
            precision = label.split()[-1]
            rate = 2 * macs / seconds / 1e9
            rows.append(dict(model=name, threads=threads, runner=label,
                             seconds=seconds, speedup=base / seconds,
                             gflops=2 * macs / 1e9, rate=rate,
                             peak=peak[precision],
                             fraction=rate / peak[precision]))
            print(rows[-1], flush=True)
    return rows


def table(rows: list) -> str:
    lines = ['| model | threads | runner | s / image | vs PyTorch fp32 | '
             'GFLOP/s | of the matmul rate |',
             '|---|---:|---|---:|---:|---:|---:|']
    for r in rows:
        lines.append(f'| {r["model"]} | {r["threads"]} | {r["runner"]} | '
                     f'{r["seconds"]:.3f} | {r["speedup"]:.2f}x | '
                     f'{r["rate"]:.0f} | {100 * r["fraction"]:.0f}% of '
                     f'{r["peak"]:.0f} |')
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--models', nargs='+', default=list(MODELS),
                        choices=list(MODELS))
    parser.add_argument('--threads', nargs='+', type=int, default=[1, 2])
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--quick', action='store_true')
    parser.add_argument('--json', help='also write the rows here')
    args = parser.parse_args(argv)
    from pvt_mm.runtime.backends import cpu_has_bf16
    bf16 = cpu_has_bf16()
    table_of = QUICK if args.quick else MODELS
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name in args.models:
            config, hw = table_of[name]
            rows += measure(name, config, hw, args.threads, args.repeats,
                            bf16, work)
    print(f'\n{cpu_name()} ({isa()}); GFLOPs from pvt_mm.analysis '
          f'(2 x multiply-accumulates of the network)')
    print(table(rows))
    if not bf16:
        print('(no bf16 rows: this CPU has no native bf16)')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)


if __name__ == '__main__':
    main()
