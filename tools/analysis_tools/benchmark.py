"""Inference latency, FPS and peak memory of a config's model or backbone.

Builds the model of an MMDetection / MMSegmentation / MMPretrain config
(random weights: speed does not depend on them), feeds random images of each
requested size through ``model.test_step`` (data preprocessing, forward,
post-processing: what ``tools/test.py`` runs per batch) or, with
``--backbone-only``, through ``model.backbone``, and reports after warm-up::

    python tools/analysis_tools/benchmark.py configs/retinanet_pvt_v2_b0_coco.py
    python tools/analysis_tools/benchmark.py configs/retinanet_pvt_v2_b2_coco.py \\
        --backbone-only --shape 512 512 --shape 800 1333 --repeats 20
    python tools/analysis_tools/benchmark.py CONFIG --device cuda --amp bf16

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` per size; on CPU
the process's peak resident set size and its increase during that size's
runs (sizes run in the order given, so list them smallest first).
See benchmarks/bench_backbones.py for side-by-side comparisons.
"""
import argparse
import json
import os.path as osp
import statistics
import sys
import time

import torch

from pvt_mm.analysis import build_model, fake_data, input_shape
from pvt_mm.engine.runner import load_config

# The measurement harness (benchmarks/harness, not installed with pvt_mm).
sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))), 'benchmarks'))
from harness.measure import peak_memory_bytes  # noqa: E402

AMP = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('config', help='config file')
    p.add_argument('--shape', type=int, nargs='+', action='append',
                   help='input H [W]; repeat for several sizes (default: the '
                        "task's usual size, e.g. 800 1333 for detection)")
    p.add_argument('--backbone-only', action='store_true',
                   help='time model.backbone on a float batch')
    p.add_argument('--batch-size', type=int, default=1)
    p.add_argument('--warmup', type=int, default=2,
                   help='untimed runs per size (default 2)')
    p.add_argument('--repeats', type=int, default=10,
                   help='timed runs per size (default 10)')
    p.add_argument('--device', default='cpu',
                   help="'cpu', 'cuda' or 'cuda:N'")
    p.add_argument('--amp', default='fp32', choices=sorted(AMP),
                   help='run under torch.autocast with this dtype')
    p.add_argument('--threads', type=int, default=None,
                   help='torch CPU threads (default: torch decides)')
    p.add_argument('--json', help='also write the results to this file')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config settings, key=value')
    args = p.parse_args(argv)
    for shape in args.shape or []:
        if len(shape) not in (1, 2) or min(shape) < 1:
            p.error(f'--shape takes H or H W (positive), got {shape}')
    if args.batch_size < 1 or args.repeats < 1 or args.warmup < 0:
        p.error('--batch-size and --repeats must be >= 1, --warmup >= 0')
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        p.error(f'--device {args.device}: CUDA is not available here; use '
                f'--device cpu')
    return args


def make_step(model, scope: str, shape, args, device: torch.device):
    """A no-argument callable running one inference batch."""
    dtype = AMP[args.amp]
    if args.backbone_only:
        if not hasattr(model, 'backbone'):
            raise SystemExit(f'{type(model).__name__} has no .backbone; drop '
                             f'--backbone-only')
        x = torch.randn(args.batch_size, 3, *shape, device=device)

        def run():
            return model.backbone(x)
    else:
        data = fake_data(scope, shape, args.batch_size, str(device))

        def run():
            return model.test_step(data)

    def step():
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype,
                                             enabled=dtype is not None):
            run()
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
    return step


def benchmark_size(step, args, device: torch.device, bar) -> dict:
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    before = peak_memory_bytes(device)
    times = []
    for i in range(args.warmup + args.repeats):
        start = time.perf_counter()
        step()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
        bar.update()
    peak = peak_memory_bytes(device)
    median = statistics.median(times)
    return dict(latency_ms=1e3 * median, mean_ms=1e3 * statistics.mean(times),
                fps=args.batch_size / median, peak_mib=peak / 2**20,
                growth_mib=max(peak - before, 0) / 2**20 if device.type == 'cpu'
                else None)


def main(argv=None) -> int:
    from mmengine.utils import ProgressBar
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = load_config(args.config, args.cfg_options)
    model, scope = build_model(cfg, str(device))
    shapes = [input_shape(s, scope) for s in (args.shape or [None])]
    what = 'backbone' if args.backbone_only else 'model'
    print(f'{what} of {args.config} on {device} ({args.amp}, '
          f'{torch.get_num_threads()} CPU threads), batch {args.batch_size}, '
          f'{args.warmup} warm-up + {args.repeats} timed runs per size')
    bar = ProgressBar(len(shapes) * (args.warmup + args.repeats))
    results = []
    for shape in shapes:
        step = make_step(model, scope, shape, args, device)
        results.append(dict(shape=list(shape),
                            **benchmark_size(step, args, device, bar)))
    print()
    mem = 'peak MiB (CPU: RSS, +growth)' if device.type == 'cpu' else 'peak MiB'
    print(f'| input | latency ms (median) | mean ms | FPS | {mem} |')
    print('|---|---:|---:|---:|---:|')
    for r in results:
        growth = f" (+{r['growth_mib']:.0f})" if r['growth_mib'] is not None else ''
        print(f"| {r['shape'][0]}x{r['shape'][1]} | {r['latency_ms']:.1f} | "
              f"{r['mean_ms']:.1f} | {r['fps']:.2f} | {r['peak_mib']:.0f}{growth} |")
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(config=args.config, device=str(device), amp=args.amp,
                           backbone_only=args.backbone_only,
                           batch_size=args.batch_size, results=results), f,
                      indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
