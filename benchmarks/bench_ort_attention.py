"""Which attention kernel an ONNX file should ask ONNX Runtime for, on the
CPU: the attention of PVTv2-B2's four stages at detector and segmentor
sizes, one process, kernels interleaved round by round.

    python benchmarks/bench_ort_attention.py                      # 1 thread, every shape
    python benchmarks/bench_ort_attention.py --shapes det_s1 --rounds 9 --threads 2
    python benchmarks/bench_ort_attention.py --peak-memory --shapes det_s1

Kernels (fp32, batch 1, the same random q / k / v for all):

* ``torch_sdpa``: ``F.scaled_dot_product_attention`` on (B, N, S, d), what
  pvt_mm runs in PyTorch (the reference of the error column);
* ``unfused``: what torch's TorchScript exporter writes for it at opset 17
  (q and k^T scaled by sqrt(scale), MatMul -> Softmax -> MatMul): ONNX
  Runtime materialises the (S, L) scores;
* ``ms_mha``: ONNX Runtime's contrib ``com.microsoft::MultiHeadAttention``
  on (B, S, N*d) query and (B, L, N*d) key / value (what
  ``pvt_mm.execution.sdpa.onnx_attention('ms_mha')`` exports);
* ``ms_mha_4d_kv``: the same op with key / value as (B, N, L, d);
* ``onnx_attention``: the standard ``Attention`` of opset 23 on 3D inputs
  (``q_num_heads`` / ``kv_num_heads``).

Each session runs with ``ORT_ENABLE_ALL`` and ``intra_op_num_threads`` =
``--threads``; times are medians over ``--rounds`` rounds, each round
running every kernel once in turn (so a load change on a shared machine
hits all kernels alike). ``--peak-memory`` instead runs one call of each
ONNX kernel in a fresh interpreter and reports how much the process's peak
RSS grew during it (the scores of an unfused kernel: S x L x 4 bytes per
head).
"""
import argparse
import json
import os
import statistics
import time

#: name -> (heads N, queries S, keys L, head size d): PVTv2-B2's stages at
#: RetinaNet's 800x1333 (padded to 800x1344) and Semantic FPN's 512x512
SHAPES = {
    'det_s1': (1, 200 * 336, 25 * 42, 64),
    'det_s2': (2, 100 * 168, 25 * 42, 64),
    'det_s3': (5, 50 * 84, 25 * 42, 64),
    'det_s4': (8, 25 * 42, 25 * 42, 64),
    'seg_s1': (1, 128 * 128, 16 * 16, 64),
    'seg_s2': (2, 64 * 64, 16 * 16, 64),
    'seg_s3': (5, 32 * 32, 16 * 16, 64),
    'seg_s4': (8, 16 * 16, 16 * 16, 64),
}
#: blocks per stage of PVTv2-B2 (for the per-model sums)
B2_DEPTHS = {'s1': 3, 's2': 4, 's3': 6, 's4': 3}
KERNELS = ('torch_sdpa', 'unfused', 'ms_mha', 'ms_mha_4d_kv',
           'onnx_attention')


def _graph(kernel: str, N: int, d: int, scale: float):
    """The one-op (or three-op) ONNX model of ``kernel`` and the layout of
    its inputs: ``'bnsd'`` or ``'bsd'`` (and ``'bsd_q'``: q 3D, k/v 4D)."""
    import numpy as np
    from onnx import TensorProto, helper as oh

    def vi(name, shape):
        return oh.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    bnsd = [vi('q', [1, N, 'S', d]), vi('k', [1, N, 'L', d]),
            vi('v', [1, N, 'L', d])]
    bsd = [vi('q', [1, 'S', N * d]), vi('k', [1, 'L', N * d]),
           vi('v', [1, 'L', N * d])]
    ms = [oh.make_opsetid('', 17), oh.make_opsetid('com.microsoft', 1)]
    if kernel == 'unfused':
        c = oh.make_tensor('c', TensorProto.FLOAT, [],
                           [float(np.sqrt(scale))])
        nodes = [oh.make_node('Transpose', ['k'], ['kt'], perm=[0, 1, 3, 2]),
                 oh.make_node('Mul', ['q', 'c'], ['qs']),
                 oh.make_node('Mul', ['kt', 'c'], ['ks']),
                 oh.make_node('MatMul', ['qs', 'ks'], ['a']),
                 oh.make_node('Softmax', ['a'], ['p'], axis=-1),
                 oh.make_node('MatMul', ['p', 'v'], ['o'])]
        graph = oh.make_graph(nodes, 'g', bnsd, [vi('o', [1, N, 'S', d])],
                              [c])
        return oh.make_model(graph, opset_imports=[oh.make_opsetid('', 17)]), \
            'bnsd'
    if kernel == 'ms_mha':
        node = oh.make_node('MultiHeadAttention', ['q', 'k', 'v'], ['o'],
                            domain='com.microsoft', num_heads=N, scale=scale)
        graph = oh.make_graph([node], 'g', bsd, [vi('o', [1, 'S', N * d])])
        return oh.make_model(graph, opset_imports=ms), 'bsd'
    if kernel == 'ms_mha_4d_kv':
        node = oh.make_node('MultiHeadAttention', ['q', 'k', 'v'], ['o'],
                            domain='com.microsoft', num_heads=N, scale=scale)
        graph = oh.make_graph([node], 'g', [bsd[0]] + bnsd[1:],
                              [vi('o', [1, 'S', N * d])])
        return oh.make_model(graph, opset_imports=ms), 'bsd_q'
    if kernel == 'onnx_attention':
        node = oh.make_node('Attention', ['q', 'k', 'v'], ['o'], scale=scale,
                            q_num_heads=N, kv_num_heads=N)
        graph = oh.make_graph([node], 'g', bsd, [vi('o', [1, 'S', N * d])])
        return oh.make_model(graph,
                             opset_imports=[oh.make_opsetid('', 23)]), 'bsd'
    raise ValueError(kernel)


def bench_shape(name: str, kernels, threads: int, rounds: int) -> dict:
    import numpy as np
    import onnxruntime as ort
    import torch
    import torch.nn.functional as F
    N, S, L, d = SHAPES[name]
    scale = d ** -0.5
    bnsd = _feed('bnsd', N, S, L, d)
    tq, tk, tv = (torch.from_numpy(bnsd[x]) for x in 'qkv')
    ref = F.scaled_dot_product_attention(tq, tk, tv).numpy()

    calls, errors = {}, {}
    for kernel in kernels:
        if kernel == 'torch_sdpa':
            calls[kernel] = lambda: F.scaled_dot_product_attention(tq, tk, tv)
            errors[kernel] = 0.
            continue
        model, layout = _graph(kernel, N, d, scale)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = (
            ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        try:
            session = ort.InferenceSession(model.SerializeToString(), options,
                                           providers=['CPUExecutionProvider'])
            feed = _feed(layout, N, S, L, d)
            out = session.run(None, feed)[0]
        except Exception as e:  # noqa: BLE001 (a kernel may be missing)
            errors[kernel] = f'{type(e).__name__}: {str(e)[:200]}'
            continue
        if layout != 'bnsd':
            out = out.reshape(1, S, N, d).transpose(0, 2, 1, 3)
        errors[kernel] = float(np.abs(out - ref).max())
        calls[kernel] = (lambda s=session, f=feed: s.run(None, f))
    times = {kernel: [] for kernel in calls}
    for r in range(rounds + 1):  # round 0: warm-up
        order = list(calls)
        order = order[r % len(order):] + order[:r % len(order)]
        for kernel in order:
            start = time.perf_counter()
            calls[kernel]()
            if r:
                times[kernel].append(time.perf_counter() - start)
    return dict(shape=name, heads=N, queries=S, keys=L, head_size=d,
                median_s={k: statistics.median(t) for k, t in times.items()},
                min_s={k: min(t) for k, t in times.items()},
                max_abs_err=errors)


def _feed(layout: str, N: int, S: int, L: int, d: int):
    import numpy as np
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, N, n, d), dtype=np.float32)
               for n in (S, L, L))

    def to_bsd(a):
        return np.ascontiguousarray(a.transpose(0, 2, 1, 3).reshape(
            1, a.shape[2], -1))
    if layout == 'bnsd':
        return dict(q=q, k=k, v=v)
    if layout == 'bsd':
        return dict(q=to_bsd(q), k=to_bsd(k), v=to_bsd(v))
    return dict(q=to_bsd(q), k=k, v=v)


def memory_worker(shape: str, kernel: str, threads: int) -> float:
    """MiB the peak RSS grows by during one call of ``kernel`` (run in a
    fresh interpreter by :func:`peak_memory`)."""
    import resource
    import onnxruntime as ort
    N, S, L, d = SHAPES[shape]
    model, layout = _graph(kernel, N, d, d ** -0.5)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=['CPUExecutionProvider'])
    feed = _feed(layout, N, S, L, d)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    session.run(None, feed)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (after - before) / 1024


def peak_memory(shapes, kernels, threads: int) -> None:
    import subprocess
    import sys
    for shape in shapes:
        N, S, L, d = SHAPES[shape]
        row = {}
        for kernel in kernels:
            if kernel == 'torch_sdpa':
                continue
            out = subprocess.run(
                [sys.executable, __file__, '--memory-worker', shape, kernel,
                 str(threads)], capture_output=True, text=True, check=True)
            row[kernel] = round(float(out.stdout.split()[-1]), 1)
        print(f'{shape}: peak RSS growth during one call, MiB (scores '
              f'{N * S * L * 4 / 2**20:.0f} MiB): {json.dumps(row)}')


def markdown(results, kernels) -> str:
    lines = ['| shape (N, S, L, d) | ' + ' | '.join(kernels) + ' |',
             '|---|' + '---:|' * len(kernels)]
    for r in results:
        cells = []
        for k in kernels:
            t = r['median_s'].get(k)
            cells.append(f'{t * 1e3:.1f}' if t is not None
                         else 'failed')
        lines.append(f"| {r['shape']} ({r['heads']}, {r['queries']}, "
                     f"{r['keys']}, {r['head_size']}) | " + ' | '.join(cells)
                     + ' |')
    for prefix in ('det', 'seg'):
        rows = [r for r in results if r['shape'].startswith(prefix)]
        if len(rows) == 4:
            sums = []
            for k in kernels:
                if all(k in r['median_s'] for r in rows):
                    sums.append(f"{sum(r['median_s'][k] * B2_DEPTHS[r['shape'][-2:]] for r in rows) * 1e3:.0f}")
                else:
                    sums.append('-')
            lines.append(f'| {prefix}: PVTv2-B2, all 16 blocks | '
                         + ' | '.join(sums) + ' |')
    return '\n'.join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--shapes', nargs='+', choices=list(SHAPES),
                   default=list(SHAPES))
    p.add_argument('--kernels', nargs='+', choices=KERNELS,
                   default=list(KERNELS))
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--rounds', type=int, default=7)
    p.add_argument('--json', help='write the results here')
    p.add_argument('--peak-memory', action='store_true',
                   help='measure each ONNX kernel\'s peak memory instead '
                   '(a fresh interpreter per kernel)')
    p.add_argument('--memory-worker', nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_worker:
        shape, kernel, threads = args.memory_worker
        print(memory_worker(shape, kernel, int(threads)))
        return
    if args.peak_memory:
        peak_memory(args.shapes, args.kernels, args.threads)
        return
    import torch
    torch.set_num_threads(args.threads)
    meta = dict(date=time.strftime('%Y-%m-%d %H:%M'), threads=args.threads,
                rounds=args.rounds, cpus=os.cpu_count(),
                loadavg_before=os.getloadavg())
    results = []
    for name in args.shapes:
        r = bench_shape(name, args.kernels, args.threads, args.rounds)
        print(json.dumps(r), flush=True)
        results.append(r)
    meta['loadavg_after'] = os.getloadavg()
    print('\nmedian ms per call, ' + json.dumps(meta))
    print(markdown(results, args.kernels))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(meta=meta, results=results), f, indent=1)


if __name__ == '__main__':
    main()
