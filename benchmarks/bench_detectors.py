"""Whole-model latency and peak memory: our detectors / segmentors in
PyTorch and in ONNX Runtime, beside MMDetection's own RetinaNet with its
built-in PVTv2-B2.

    python benchmarks/bench_detectors.py                          # the table in docs/benchmarks.md
    python benchmarks/bench_detectors.py --quick                  # seconds, smoke test
    python benchmarks/bench_detectors.py --profile                # + top operators per cell
    python benchmarks/bench_detectors.py --device cuda --in-process \
        --dtype bf16 --workloads test train --impls ours mmdet   # GPU

Cells (batch 1, random weights: speed does not depend on them):

* ``retinanet_b2`` at 800x1333: ``ours`` = configs/retinanet_pvt_v2_b2_coco.py
  in PyTorch, ``mmdet`` = ``mmdet::pvt/retinanet_pvtv2-b2_fpn_1x_coco.py``
  (mmdet's ``PyramidVisionTransformerV2``), ``ours-ort`` = ours exported by
  pvt_mm.deploy and run by ONNX Runtime (+ the same post-processing);
* ``sem_fpn_b2`` at 512x512: configs/sem_fpn_pvt_v2_b2_ade20k_40k.py in
  PyTorch and in ONNX Runtime.

Workloads: ``test`` is ``model.test_step(data)``: data preprocessing
(normalisation, padding), the network and post-processing (box decoding and
NMS / resizing the logits), on a raw uint8 image of the size. ``train`` is
what an optimizer step sees: preprocessing, the losses on random ground
truth (four boxes / a random label map) and ``backward()``. ``--dtype
bf16|fp16`` runs the PyTorch cells under ``torch.autocast`` (as MMEngine's
``AmpOptimWrapper`` does); ONNX Runtime cells run fp32 inference only. Peak
memory: the process's peak RSS on the CPU, ``torch.cuda.max_memory_allocated``
on CUDA. Each cell runs in a fresh interpreter (as
benchmarks/bench_backbones.py does; ``--in-process`` on CUDA runs them all in
one); the ONNX file is exported once, in its own process, before the ORT
cells.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from typing import Dict, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MODELS = {
    'retinanet_b2': dict(
        size='800x1333', scope='mmdet',
        impls={'ours': 'configs/retinanet_pvt_v2_b2_coco.py',
               'mmdet': 'mmdet::pvt/retinanet_pvtv2-b2_fpn_1x_coco.py',
               'ours-ort': 'configs/retinanet_pvt_v2_b2_coco.py'}),
    'sem_fpn_b2': dict(
        size='512x512', scope='mmseg',
        impls={'ours': 'configs/sem_fpn_pvt_v2_b2_ade20k_40k.py',
               'ours-ort': 'configs/sem_fpn_pvt_v2_b2_ade20k_40k.py'}),
}


#: --dtype -> the torch.autocast dtype (None: fp32, autocast off)
DTYPES = {'fp32': None, 'bf16': 'bfloat16', 'fp16': 'float16'}


WORKLOADS = ('test', 'train')


def parse_size(text: str):
    h, _, w = text.lower().partition('x')
    return int(h), int(w or h)


def _peak_rss_gib() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def build(config: str, device: str):
    """The config's model with random weights (no pretrained download)."""
    from mmengine.config import Config

    from pvt_mm.deploy import load_model
    if '::' in config:  # a config shipped inside mmdet
        from mmengine.hub import get_config
        cfg = get_config(config)
    else:
        cfg = Config.fromfile(os.path.join(REPO, config))
    if cfg.model.get('backbone', {}).get('init_cfg'):
        cfg.model.backbone.init_cfg = None
    if cfg.model.get('pretrained'):
        cfg.model.pretrained = None
    return load_model(cfg, device=device)


def export_worker(spec: dict) -> dict:
    import torch
    torch.set_num_threads(spec['threads'])
    from pvt_mm.deploy import export_onnx
    model = build(spec['config'], 'cpu')
    start = time.perf_counter()
    meta = export_onnx(model, spec['onnx'], shape=parse_size(spec['size']))
    return dict(export_s=time.perf_counter() - start, kind=meta['kind'])


def cell_worker(spec: dict) -> dict:
    import torch
    torch.set_num_threads(spec['threads'])
    from pvt_mm.cli.analysis import fake_data, time_calls
    device = spec['device']
    model = build(spec['config'], device)
    runner = model
    if spec['impl'].endswith('-ort'):
        from pvt_mm.deploy import ORTModel
        providers = (['CUDAExecutionProvider', 'CPUExecutionProvider']
                     if device == 'cuda' else ['CPUExecutionProvider'])
        prefix = (os.path.join(tempfile.gettempdir(), 'ort_profile')
                  if spec['profile'] else None)
        runner = ORTModel(spec['onnx'], model, weights_loaded=False,
                          providers=providers, profile_prefix=prefix)
    shape = parse_size(spec['size'])
    dtype = DTYPES[spec.get('dtype', 'fp32')]
    dtype = dtype and getattr(torch, dtype)
    train = spec.get('workload', 'test') == 'train'
    model.train(train)
    last_loss = []

    def step():
        with torch.autocast(device, dtype=dtype, enabled=dtype is not None):
            if train:  # what the optimizer wrapper's step sees
                data = model.data_preprocessor(
                    fake_data(spec['scope'], shape, 1, device, with_gt=True),
                    training=True)
                losses = model(**data, mode='loss')
                loss, _ = model.parse_losses(losses)
                loss.backward()
                last_loss[:] = [loss.item()]
                model.zero_grad(set_to_none=False)
            else:
                with torch.no_grad():
                    runner.test_step(fake_data(spec['scope'], shape, 1,
                                               device))
        if device == 'cuda':
            torch.cuda.synchronize()

    if device == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times, cpu = time_calls(step, spec['warmup'], spec['repeats'])
    # CPU: the process's peak RSS; CUDA: the tensors' peak on the device
    peak = (torch.cuda.max_memory_allocated() / 2**30 if device == 'cuda'
            else _peak_rss_gib())
    result = dict(spec, times=times, median_s=statistics.median(times),
                  cpu_s=statistics.median(cpu), peak_gib=peak)
    if train:
        result['loss'] = last_loss[0]
    if spec['profile']:
        result['profile'] = profile(runner, step, spec)
    return result


def profile(runner, step, spec) -> List[list]:
    """Top operators of one more call: [name, ms, share]."""
    if spec['impl'].endswith('-ort'):
        step()
        path = runner.session.end_profiling()
        with open(path) as f:
            events = json.load(f)
        per_op: Dict[str, float] = {}
        for e in events:
            if e.get('cat') == 'Node' and e['name'].endswith('_kernel_time'):
                op = e.get('args', {}).get('op_name', e['name'])
                per_op[op] = per_op.get(op, 0.) + e['dur'] / 1e3
        os.remove(path)
        # the profile spans warm-up and timed runs: per call
        calls = spec['warmup'] + spec['repeats'] + 1
        per_op = {k: v / calls for k, v in per_op.items()}
    else:
        import torch
        with torch.profiler.profile(activities=[
                torch.profiler.ProfilerActivity.CPU]) as prof:
            step()
        per_op = {e.key: e.self_cpu_time_total / 1e3
                  for e in prof.key_averages()}
    total = sum(per_op.values()) or 1.
    top = sorted(per_op.items(), key=lambda kv: -kv[1])[:12]
    return [[k, round(v, 1), round(v / total, 3)] for k, v in top]


WORKERS = {'cell': cell_worker, 'export': export_worker}


def spawn(kind: str, spec: dict, timeout: float,
          in_process: bool = False) -> Optional[dict]:
    """Run one worker in a fresh interpreter (or, with ``in_process``, in
    this one); ``None`` (and a note) on error."""
    from pvt_mm.cli.analysis import dispatch_worker
    return dispatch_worker(__file__, WORKERS, kind, spec, timeout, in_process,
                           cwd=REPO)


def markdown(results: List[dict]) -> str:
    lines = ['| model | input | workload | dtype | impl | median s | CPU s | '
             'peak GiB | ours (PyTorch) speed-up over impl |',
             '|---|---|---|---|---|---:|---:|---:|---:|']
    for model in MODELS:
        for workload in WORKLOADS:
            rows = [r for r in results if r['model'] == model
                    and r.get('workload', 'test') == workload]
            ours = next((r for r in rows if r['impl'] == 'ours'), None)
            for r in rows:
                ratio = (f'{r["median_s"] / ours["median_s"]:.2f}x'
                         if ours else 'n/a')
                lines.append(
                    f'| {model} | {r["size"]} | {workload} | '
                    f'{r.get("dtype", "fp32")} | {r["impl"]} | '
                    f'{r["median_s"]:.3f} | {r["cpu_s"]:.2f} | '
                    f'{r["peak_gib"]:.2f} | {ratio} |')
    return '\n'.join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--models', nargs='+', default=list(MODELS),
                   choices=list(MODELS))
    p.add_argument('--impls', nargs='+', default=['ours', 'mmdet', 'ours-ort'])
    p.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    p.add_argument('--dtype', default='fp32', choices=list(DTYPES),
                   help='bf16/fp16: the PyTorch cells run under '
                   'torch.autocast (ONNX Runtime cells are skipped)')
    p.add_argument('--workloads', nargs='+', default=['test'],
                   choices=WORKLOADS,
                   help='test: model.test_step (pre-processing, network, '
                   'post-processing); train: the loss on random ground truth '
                   '+ backward (PyTorch cells only)')
    p.add_argument('--in-process', action='store_true',
                   help='CUDA only: run every cell in this interpreter '
                   '(peak memory is per cell on CUDA; saves the imports)')
    p.add_argument('--threads', type=int, default=os.cpu_count())
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--size', help='override every model\'s input size (HxW)')
    p.add_argument('--quick', action='store_true',
                   help='tiny sizes, 1 repeat: a smoke test')
    p.add_argument('--profile', action='store_true',
                   help='also record the top operators of each cell')
    p.add_argument('--onnx-dir', default=os.path.join(REPO, 'work_dirs',
                                                      'bench_onnx'))
    p.add_argument('--timeout', type=float, default=1800)
    p.add_argument('--json', help='write the results to this JSON file')
    p.add_argument('--worker', nargs=2, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.in_process and args.device != 'cuda':
        from pvt_mm.cli.analysis import IN_PROCESS_NEEDS_CUDA
        raise SystemExit(IN_PROCESS_NEEDS_CUDA)
    if args.worker:
        kind, spec = args.worker
        print('RESULT ' + json.dumps(WORKERS[kind](json.loads(spec))))
        return 0
    if args.quick:
        args.size, args.repeats, args.warmup = args.size or '128x128', 1, 0
    os.makedirs(args.onnx_dir, exist_ok=True)
    results, exports = [], {}
    start = time.time()
    load = os.getloadavg()
    for model, workload in ((m, w) for m in args.models
                            for w in args.workloads):
        info = MODELS[model]
        size = args.size or info['size']
        for impl, config in info['impls'].items():
            if impl not in args.impls:
                continue
            if impl.endswith('-ort') and (workload == 'train'
                                          or args.dtype != 'fp32'):
                continue  # ONNX Runtime runs the fp32 graph, inference only
            spec = dict(model=model, impl=impl, config=config, size=size,
                        scope=info['scope'], device=args.device,
                        dtype=args.dtype, workload=workload,
                        threads=args.threads, repeats=args.repeats,
                        warmup=args.warmup, profile=args.profile)
            if impl.endswith('-ort'):
                onnx = os.path.join(args.onnx_dir, f'{model}_{size}.onnx')
                if onnx not in exports:
                    print(f'[bench] exporting {model} at {size} ...',
                          flush=True)
                    exports[onnx] = spawn('export', dict(spec, onnx=onnx),
                                          args.timeout)
                if exports[onnx] is None:
                    continue
                spec['onnx'] = onnx
            print(f'[bench] {model} {workload} {args.dtype} {impl} {size} ...',
                  flush=True)
            res = spawn('cell', spec, args.timeout, args.in_process)
            if res:
                print(f'    median {res["median_s"]:.3f} s, CPU '
                      f'{res["cpu_s"]:.2f} s, peak {res["peak_gib"]:.2f} GiB',
                      flush=True)
                results.append(res)
    meta = dict(date=time.strftime('%Y-%m-%d %H:%M'),
                machine=platform.machine(),
                cpus=os.cpu_count(), threads=args.threads, device=args.device,
                dtype=args.dtype,
                loadavg_before=load, loadavg_after=os.getloadavg(),
                minutes=round((time.time() - start) / 60, 1))
    print()
    print(markdown(results))
    print(f'\n{meta}')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(meta=meta, results=results), f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
