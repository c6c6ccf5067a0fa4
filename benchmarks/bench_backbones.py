"""Side-by-side speed and memory of pvt_mm's backbones and their peers.

One command runs pvt_mm, mmdet 3.x's built-in ``PyramidVisionTransformer``
/ ``PyramidVisionTransformerV2``, timm's ``pvt_v2_*`` and HF transformers'
``CvtModel`` on the same input, forward and forward+backward, and prints
median times, peak memory, the ratios peer / pvt_mm and the achieved GFLOP/s
against a matmul peak measured in the same run::

    python benchmarks/bench_backbones.py                    # full CPU table
    python benchmarks/bench_backbones.py --quick            # seconds, smoke test
    python benchmarks/bench_backbones.py --device cuda --dtype bf16
    python benchmarks/bench_backbones.py --models pvtv2_b2 --sizes 800x1333 \\
        --json benchmarks/results/cpu_fp32.json --write-docs

Every (model, implementation, size, workload) cell runs in a fresh
subprocess that imports the same libraries, so peak memory is that cell's
alone: on CPU the peak resident set size (``getrusage``'s ``ru_maxrss``) and
its increase over the RSS just before the first timed call; on CUDA
``torch.cuda.max_memory_allocated``.
"""
import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional

from harness.measure import parse_size, peak_memory_bytes, rss_bytes
from harness.workers import print_result

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(REPO, 'docs', 'benchmarks.md')
PLOT = os.path.join(REPO, 'docs', 'benchmarks.png')
DOC_BEGIN, DOC_END = '<!-- bench-table:begin -->', '<!-- bench-table:end -->'


def doc_targets(meta: dict):
    """``(begin marker, end marker, plot path)`` of a run's block in
    docs/benchmarks.md: the CPU fp32 table, or one block per GPU dtype
    (``<!-- bench-table-cuda-bf16:begin -->``, docs/benchmarks_cuda_bf16.png)."""
    if (meta['device'], meta['dtype']) == ('cpu', 'fp32'):
        return DOC_BEGIN, DOC_END, PLOT
    tag = f"{meta['device']}-{meta['dtype']}"
    return (f'<!-- bench-table-{tag}:begin -->',
            f'<!-- bench-table-{tag}:end -->',
            os.path.join(REPO, 'docs', f"benchmarks_{tag.replace('-', '_')}.png"))

# ------------------------------------------------------------------ models
# Each builder returns a module whose forward maps an image batch to a list
# of tensors. Every implementation is configured to do the same computation
# (drop-path off, same widths/depths, same outputs).


def _pvt_mm(cls_name: str, **kwargs) -> Callable:
    def build(with_cp: bool = False):
        import pvt_mm
        return getattr(pvt_mm, cls_name)(drop_path_rate=0., with_cp=with_cp,
                                         **kwargs)
    return build


def _mmdet_v2(embed_dims: int, num_layers) -> Callable:
    def build(with_cp: bool = False):
        from mmdet.models.backbones import PyramidVisionTransformerV2
        return PyramidVisionTransformerV2(embed_dims=embed_dims,
                                          num_layers=num_layers,
                                          drop_path_rate=0.)
    return build


def _mmdet_v1(with_cp: bool = False):
    from mmdet.models.backbones import PyramidVisionTransformer
    return PyramidVisionTransformer(num_layers=[3, 4, 6, 3], drop_path_rate=0.)


def _timm(name: str) -> Callable:
    def build(with_cp: bool = False):
        import timm
        return timm.create_model(name, features_only=True, drop_path_rate=0.)
    return build


class _HFCvt:
    """``CvtModel`` returning ``[last_hidden_state, cls_token_value]``."""

    def __new__(cls, with_cp: bool = False):
        import torch.nn as nn
        from transformers import CvtConfig, CvtModel

        class Wrapped(nn.Module):
            def __init__(self):
                super().__init__()
                self.model = CvtModel(CvtConfig(drop_path_rate=[0., 0., 0.]),
                                      add_pooling_layer=False)

            def forward(self, x):
                out = self.model(pixel_values=x)
                return [out.last_hidden_state, out.cls_token_value]

        return Wrapped()


#: name -> title, pvt_mm builder, peers. pvt_mm's CvT is configured like
#: HF's CvtModel (GELU, class token in stage 3, no output norms) so both do
#: the same work.
MODELS: Dict[str, dict] = {
    'pvtv2_b0': dict(title='PVTv2-B0', impls={
        'pvt_mm': _pvt_mm('PVTv2', arch='b0'),
        'mmdet': _mmdet_v2(32, [2, 2, 2, 2]),
        'timm': _timm('pvt_v2_b0')}),
    'pvtv2_b2': dict(title='PVTv2-B2', impls={
        'pvt_mm': _pvt_mm('PVTv2', arch='b2'),
        'mmdet': _mmdet_v2(64, [3, 4, 6, 3]),
        'timm': _timm('pvt_v2_b2')}),
    'pvtv2_b2_li': dict(title='PVTv2-B2-Li', impls={
        'pvt_mm': _pvt_mm('PVTv2', arch='b2_li'),
        'timm': _timm('pvt_v2_b2_li')}),
    'pvtv1_s': dict(title='PVTv1-Small', impls={
        'pvt_mm': _pvt_mm('PVTv1', arch='small'),
        'mmdet': _mmdet_v1}),
    'cvt_13': dict(title='CvT-13', impls={
        'pvt_mm': _pvt_mm('CvT', arch='13', with_cls_token=True,
                          out_norms=False, act_cfg=dict(type='GELU')),
        'hf': _HFCvt}),
}
#: Libraries each implementation imports (workers import the union of the
#: run's libraries, so every cell starts from the same baseline memory).
LIBS = {'pvt_mm': ['pvt_mm'], 'mmdet': ['mmdet.models.backbones'],
        'timm': ['timm'], 'hf': ['transformers']}
MODES = ('fwd', 'fwd+bwd')
FULL_SIZES = ('224x224', '512x512', '800x1333')


# ------------------------------------------------------------------ worker

def run_cell(spec: dict) -> dict:
    """Time one (model, impl, size, mode) and measure its peak memory."""
    import torch

    from harness.ops import outputs_list
    from harness.measure import time_calls
    for lib in spec['libs']:
        importlib.import_module(lib)
    torch.set_num_threads(spec['threads'])
    device = torch.device(spec['device'])
    impl = spec['impl']
    with_cp = impl.endswith('+cp')
    build = MODELS[spec['model']]['impls'][impl.replace('+cp', '')]
    torch.manual_seed(0)
    model = build(with_cp=with_cp).to(device)
    h, w = parse_size(spec['size'])
    x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    x = x.to(device)
    train = spec['mode'] == 'fwd+bwd'
    model.train(train)
    if with_cp and impl.startswith('timm'):
        model.set_grad_checkpointing(True)
    if spec.get('compile'):  # compiled during the warm-up runs
        torch._dynamo.reset()
        model = torch.compile(model)
    dtype = dict(fp32=None, bf16=torch.bfloat16, fp16=torch.float16)[spec['dtype']]

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            if train:
                outs = outputs_list(model(x))
                loss = sum(o.float().mean() for o in outs)
                loss.backward()
                model.zero_grad(set_to_none=False)
            else:
                with torch.no_grad():
                    outputs_list(model(x))
        if device.type == 'cuda':
            torch.cuda.synchronize()

    if device.type == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = rss_bytes()
    times, cpu = time_calls(step, spec['warmup'], spec['repeats'])
    peak = peak_memory_bytes(device)
    return dict(spec, times=times, median_s=statistics.median(times),
                cpu_s=statistics.median(cpu),
                peak_gib=peak / 2**30, delta_gib=max(peak - base, 0) / 2**30)


def matmul_peak(spec: dict) -> dict:
    """GFLOP/s of a large square matmul: the ceiling for these models."""
    import torch
    torch.set_num_threads(spec['threads'])
    dtype = dict(fp32=torch.float32, bf16=torch.bfloat16,
                 fp16=torch.float16)[spec['dtype']]
    n = 2048 if spec['device'] == 'cpu' else 8192
    a = torch.randn(n, n, device=spec['device']).to(dtype)
    b = torch.randn(n, n, device=spec['device']).to(dtype)
    times = []
    for _ in range(6):
        start = time.perf_counter()
        a @ b
        if spec['device'] == 'cuda':
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return dict(gflops=2 * n ** 3 / statistics.median(times[1:]) / 1e9)


def model_flops(spec: dict) -> dict:
    """Forward FLOPs (2 x multiply-accumulates, attention included) of the
    pvt_mm model at one size."""
    import torch
    torch.set_num_threads(spec['threads'])
    model = MODELS[spec['model']]['impls']['pvt_mm']().eval()
    h, w = parse_size(spec['size'])
    from pvt_mm.analysis import count_macs
    macs = count_macs(model, torch.zeros(1, 3, h, w))
    return dict(gflop=2 * macs / 1e9)


WORKERS = {'cell': run_cell, 'matmul': matmul_peak, 'flops': model_flops}


def worker_main(kind: str, spec_json: str) -> None:
    result = WORKERS[kind](json.loads(spec_json))
    print_result(result)


# ------------------------------------------------------------------ parent

def spawn(kind: str, spec: dict, timeout: float,
          in_process: bool = False) -> Optional[dict]:
    """Run one worker in a fresh interpreter (or, with ``in_process``, in
    this one); ``None`` (and a note) on error."""
    from harness.workers import dispatch_worker
    return dispatch_worker(__file__, WORKERS, kind, spec, timeout, in_process,
                           cwd=REPO, TRANSFORMERS_VERBOSITY='error')


def plan(args) -> List[dict]:
    cells = []
    for model in args.models:
        impls = [i for i in MODELS[model]['impls'] if i in args.impls]
        for size in args.sizes:
            for mode in args.modes:
                names = list(impls)
                if mode == 'fwd+bwd' and args.with_cp and 'pvt_mm' in names:
                    names.append('pvt_mm+cp')
                for impl in names:
                    cells.append(dict(model=model, impl=impl, size=size,
                                      mode=mode))
    return cells


def fmt_ratio(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.2f}x'


def summarize(results: List[dict], peak: Optional[float],
              flops: Dict[str, float]) -> List[dict]:
    """One row per cell, with peer/pvt_mm time and memory ratios."""
    base = {(r['model'], r['size'], r['mode']): r for r in results
            if r['impl'] == 'pvt_mm'}
    rows = []
    order = ['pvt_mm', 'pvt_mm+cp', 'mmdet', 'timm', 'hf']
    results = sorted(results, key=lambda r: (
        list(MODELS).index(r['model']), parse_size(r['size']),
        MODES.index(r['mode']), order.index(r['impl'])))
    for r in results:
        ref = base.get((r['model'], r['size'], r['mode']))
        gflop = flops.get(f"{r['model']}@{r['size']}")
        if gflop is not None and r['mode'] == 'fwd+bwd':
            gflop *= 3  # backward ~ 2 x forward
        achieved = gflop / r['median_s'] if gflop else None
        rows.append(dict(
            r, speedup=(r['median_s'] / ref['median_s']) if ref else None,
            mem_ratio=(ref['peak_gib'] / r['peak_gib']) if ref else None,
            delta_ratio=(ref['delta_gib'] / r['delta_gib'])
            if ref and r['delta_gib'] > 0 else None,
            gflop=gflop, gflops=achieved,
            peak_frac=(achieved / peak) if achieved and peak else None))
    return rows


def markdown_table(rows: List[dict]) -> str:
    head = ('| model | input | workload | impl | median s | CPU s '
            '| pvt_mm speed-up | peak GiB | Δ GiB | pvt_mm/impl peak '
            '| GFLOP/s (% of peak) |\n'
            '|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n')
    lines = []
    for r in rows:
        gfs = '-' if r['gflops'] is None else (
            f"{r['gflops']:.3g} ({100 * r['peak_frac']:.0f}%)"
            if r['peak_frac'] else f"{r['gflops']:.3g}")
        lines.append(
            f"| {MODELS[r['model']]['title']} | {r['size']} | {r['mode']} | "
            f"{r['impl']} | {r['median_s']:.3f} | {r.get('cpu_s', 0):.2f} | "
            f"{fmt_ratio(r['speedup'])} | "
            f"{r['peak_gib']:.2f} | {r['delta_gib']:.2f} | "
            f"{fmt_ratio(r['mem_ratio'])} | {gfs} |")
    return head + '\n'.join(lines) + '\n'


def plot(rows: List[dict], path: str, note: str = '') -> None:
    """Median time and peak memory per implementation, largest input."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    largest = max(rows, key=lambda r: parse_size(r['size'])[0] *
                  parse_size(r['size'])[1])['size']
    sel = [r for r in rows if r['size'] == largest]
    groups = sorted({(r['model'], r['mode']) for r in sel},
                    key=lambda g: (list(MODELS).index(g[0]), g[1]))
    impls = sorted({r['impl'] for r in sel},
                   key=lambda i: (i != 'pvt_mm', i != 'pvt_mm+cp', i))
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.6 * len(groups) + 2))
    height = 0.8 / max(len(impls), 1)
    for ax, key, label in ((axes[0], 'median_s', 'median time (s)'),
                           (axes[1], 'peak_gib', 'peak memory (GiB)')):
        for j, impl in enumerate(impls):
            ys, vals = [], []
            for g, (model, mode) in enumerate(groups):
                for r in sel:
                    if (r['model'], r['mode'], r['impl']) == (model, mode, impl):
                        ys.append(g + j * height)
                        vals.append(r[key])
            ax.barh(ys, vals, height=height, label=impl)
        ax.set_yticks([g + 0.4 - height / 2 for g in range(len(groups))])
        ax.set_yticklabels([f'{MODELS[m]["title"]} {mode}' for m, mode in groups])
        ax.invert_yaxis()
        ax.set_xlabel(label)
        ax.grid(axis='x', alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc='lower center', ncol=len(impls))
    fig.suptitle(f'Backbones at {largest}, batch 1{note} (lower is better)')
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_docs(table: str, meta: dict, doc: str = DOC) -> None:
    """Replace the run's generated block of docs/benchmarks.md (see
    :func:`doc_targets`) with ``table``."""
    from harness.measure import replace_doc_block
    begin, end, _ = doc_targets(meta)
    compiled = ', torch.compile' if meta.get('compile') else ''
    replace_doc_block(
        doc, begin, end,
        f"Measured {meta['date']} on {meta['machine']}, "
        f"{meta['threads']} threads, {meta['device']} {meta['dtype']}"
        f"{compiled}, batch 1, {meta['repeats']} timed runs after "
        f"{meta['warmup']} warm-up; matmul peak "
        f"{meta['matmul_gflops']:.0f} GFLOP/s.\n\n{table}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--models', nargs='+', default=list(MODELS),
                   choices=list(MODELS))
    p.add_argument('--impls', nargs='+', default=['pvt_mm', 'mmdet', 'timm', 'hf'],
                   choices=['pvt_mm', 'mmdet', 'timm', 'hf'])
    p.add_argument('--sizes', nargs='+', default=None,
                   help='HxW input sizes (default: 224x224 512x512 800x1333)')
    p.add_argument('--modes', nargs='+', default=list(MODES), choices=MODES)
    p.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    p.add_argument('--dtype', default='fp32', choices=['fp32', 'bf16', 'fp16'],
                   help='bf16/fp16 run under torch.autocast')
    p.add_argument('--threads', type=int, default=os.cpu_count(),
                   help='torch threads per worker (default: all cores)')
    p.add_argument('--compile', action='store_true',
                   help='torch.compile every model (inductor; compiled in '
                   'the warm-up runs, so --warmup must be >= 1)')
    p.add_argument('--in-process', action='store_true',
                   help='CUDA only: run every cell in this interpreter '
                   '(peak memory is per cell on CUDA; saves the imports)')
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--rounds', type=int, default=1,
                   help='measure every cell this many times, round-robin '
                        '(spreads changing machine load evenly over the '
                        'implementations)')
    p.add_argument('--no-cp', dest='with_cp', action='store_false',
                   help='skip the pvt_mm with_cp=True fwd+bwd rows')
    p.add_argument('--no-flops', dest='flops', action='store_false',
                   help='skip the FLOP count (GFLOP/s column shows "-")')
    p.add_argument('--timeout', type=float, default=900,
                   help='seconds per cell before it is abandoned')
    p.add_argument('--quick', action='store_true',
                   help='smoke run: 64x64 inputs, 1 repeat, no warm-up')
    p.add_argument('--json', help='write all results to this JSON file')
    p.add_argument('--from-json', nargs='+',
                   help='skip measuring; report these JSON files (merged)')
    p.add_argument('--write-docs', action='store_true',
                   help=f'put the table into {os.path.relpath(DOC, REPO)} and '
                        f'the plot into {os.path.relpath(PLOT, REPO)} (GPU '
                        f'runs: their own block and plot per dtype)')
    p.add_argument('--plot', help='save the plot to this path')
    p.add_argument('--worker', nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.sizes = args.sizes or ['64x64']
        args.repeats, args.warmup = 1, int(args.compile)
    args.sizes = args.sizes or list(FULL_SIZES)
    for s in args.sizes:
        try:
            parse_size(s)
        except ValueError:
            p.error(f'--sizes: {s!r} is not HxW (e.g. 800x1333) or a side')
    if args.compile and args.warmup < 1:
        p.error('--compile needs --warmup >= 1 (the first call compiles)')
    if args.in_process and args.device != 'cuda':
        from harness.workers import IN_PROCESS_NEEDS_CUDA
        p.error(IN_PROCESS_NEEDS_CUDA)
    if args.repeats < 1 or args.warmup < 0 or args.rounds < 1:
        p.error('--repeats and --rounds must be >= 1, --warmup >= 0')
    return args


def measure(args) -> dict:
    cells = plan(args)
    libs = sorted({lib for c in cells for lib in LIBS[c['impl'].split('+')[0]]})
    common = dict(device=args.device, dtype=args.dtype, threads=args.threads,
                  compile=args.compile)
    meta = dict(common, date=time.strftime('%Y-%m-%d %H:%M'),
                machine=f'{platform.processor() or platform.machine()} '
                        f'({os.cpu_count()} cores)',
                repeats=args.repeats, warmup=args.warmup)
    peak = spawn('matmul', common, args.timeout, args.in_process)
    meta['matmul_gflops'] = peak['gflops'] if peak else 0.
    print(f"matmul peak: {meta['matmul_gflops']:.0f} GFLOP/s "
          f"({args.device} {args.dtype}, {args.threads} threads)", flush=True)
    flops = {}
    if args.flops:
        for model in args.models:
            for size in args.sizes:
                r = spawn('flops', dict(common, model=model, size=size),
                          args.timeout, args.in_process)
                if r:
                    flops[f'{model}@{size}'] = r['gflop']
    runs = {}
    for round_ in range(args.rounds):
        for i, cell in enumerate(cells, 1):
            r = spawn('cell', dict(cell, **common, libs=libs,
                                   repeats=args.repeats, warmup=args.warmup),
                      args.timeout, args.in_process)
            if r:
                runs.setdefault(i, []).append(r)
                print(f"[{round_ + 1}.{i}/{len(cells)}] {cell['model']:12s} "
                      f"{cell['size']:9s} {cell['mode']:8s} {cell['impl']:10s} "
                      f"{r['median_s']:8.3f} s (CPU {r['cpu_s']:.2f} s)  peak "
                      f"{r['peak_gib']:.2f} GiB (+{r['delta_gib']:.2f})",
                      flush=True)
    return dict(meta=meta, flops=flops,
                results=[combine_rounds(v) for _, v in sorted(runs.items())])


def combine_rounds(runs: List[dict]) -> dict:
    """One cell measured in several rounds: the round with the lowest
    median time (the one other processes disturbed least; on a shared
    machine a round can be several times slower), the largest peak."""
    best = min(runs, key=lambda r: r['median_s'])
    return dict(best, round_medians=[r['median_s'] for r in runs],
                peak_gib=max(r['peak_gib'] for r in runs),
                delta_gib=max(r['delta_gib'] for r in runs))


def merge_results(paths: List[str]) -> dict:
    """Results of several runs (``--json`` files) as one; meta of the first."""
    data = dict(meta=None, flops={}, results=[])
    for path in paths:
        with open(path) as f:
            part = json.load(f)
        data['meta'] = data['meta'] or part['meta']
        data['flops'].update(part['flops'])
        data['results'] += part['results']
    return data


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker_main(*args.worker)
        return 0
    if args.from_json:
        data = merge_results(args.from_json)
    else:
        data = measure(args)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(data, f, indent=1)
    if not data['results']:
        print('no cell finished')
        return 1
    rows = summarize(data['results'], data['meta']['matmul_gflops'],
                     data['flops'])
    table = markdown_table(rows)
    print('\n' + table)
    if args.plot or args.write_docs:
        meta = data['meta']
        plot(rows, args.plot or doc_targets(meta)[2],
             note=f", {meta['device']} {meta['dtype']}")
    if args.write_docs:
        write_docs(table, data['meta'])
    return 0


if __name__ == '__main__':
    sys.exit(main())
