"""Record the aten operators a backbone dispatches, to compare two versions
of the code without timing them.

Timings on a shared CPU move by several percent from run to run; when a
change is meant to leave the computation alone (a refactor), the sequence
of operators it dispatches, with their input shapes, says so exactly::

    # in each checkout (PYTHONPATH picks which pvt_mm is imported)
    PYTHONPATH=/path/to/old python benchmarks/op_trace.py cvt_13 800x1333 old.json
    PYTHONPATH=/path/to/new python benchmarks/op_trace.py cvt_13 800x1333 new.json
    python benchmarks/op_trace.py --compare old.json new.json

Two traces are recorded per run, in the order of bench_backbones.py's
workloads: ``fwd`` (eval mode, no_grad) and ``fwd+bwd`` (train mode, the
loss the benchmark uses). Only the main thread is traced: pvt_mm starts no
threads of its own (torch's intra-op threads run inside one operator).
The recorder is :class:`harness.ops.OpRecorder`, which
tests/execution/test_op_count.py also uses to count a training step's
compute operators against timm and mmdet.
"""
import argparse
import collections
import json
import sys

import torch

from harness.ops import OpRecorder, training_step_ops

MODELS = {'pvtv2_b0': ('PVTv2', 'b0', {}), 'pvtv2_b2': ('PVTv2', 'b2', {}),
          'pvtv2_b2_li': ('PVTv2', 'b2_li', {}),
          'pvtv1_s': ('PVTv1', 'small', {}),
          'cvt_13': ('CvT', '13', dict(extra_downsample=True,
                                       out_indices=(0, 1, 2, 3)))}


def record(model_name: str, size: str, threads: int) -> dict:
    import pvt_mm
    torch.set_num_threads(threads)
    cls, arch, kwargs = MODELS[model_name]
    model = getattr(pvt_mm, cls)(arch=arch, drop_path_rate=0., **kwargs)
    h, w = (int(v) for v in size.split('x'))
    x = torch.randn(1, 3, h, w)
    model.eval()
    with torch.no_grad(), OpRecorder() as fwd:
        model(x)
    steps = training_step_ops(model, x)
    traces = {mode: [f'{op} {shapes}' for op, shapes in rec.ops]
              for mode, rec in (('fwd', fwd), ('fwd+bwd', steps))}
    return dict(pvt_mm=pvt_mm.__file__, model=model_name, size=size,
                threads=threads, traces=traces)


def compare(a: dict, b: dict) -> bool:
    same = True
    for mode in a['traces']:
        ta, tb = a['traces'][mode], b['traces'][mode]
        if ta == tb:
            print(f'{mode}: identical, {len(ta)} operators')
            continue
        same = False
        first = next(i for i, (x, y) in enumerate(zip(ta + [''], tb + ['']))
                     if x != y)
        print(f'{mode}: {len(ta)} vs {len(tb)} operators, first difference '
              f'at #{first}:\n  {ta[first:first + 1]}\n  {tb[first:first + 1]}')
        ca = collections.Counter(op.split(' ')[0] for op in ta)
        cb = collections.Counter(op.split(' ')[0] for op in tb)
        for op in sorted(set(ca) | set(cb)):
            if ca[op] != cb[op]:
                print(f'  count of {op}: {ca[op]} vs {cb[op]}')
    return same


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('args', nargs='+', help='MODEL HxW OUT.json, or '
                        '--compare A.json B.json')
    parser.add_argument('--compare', action='store_true')
    parser.add_argument('--threads', type=int, default=2,
                        help='torch threads (some paths depend on it)')
    args = parser.parse_args(argv)
    if args.compare:
        a, b = (json.load(open(p)) for p in args.args)
        print(f'A: {a["pvt_mm"]}\nB: {b["pvt_mm"]}')
        return 0 if compare(a, b) else 1
    model_name, size, out = args.args
    result = record(model_name, size, args.threads)
    with open(out, 'w') as f:
        json.dump(result, f)
    print(f'{result["pvt_mm"]}: ' + ', '.join(
        f'{m} {len(t)} operators' for m, t in result['traces'].items()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
