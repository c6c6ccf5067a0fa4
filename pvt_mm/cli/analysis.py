"""What the analysis tools (get_flops, benchmark, benchmarks/) share:
FLOP counting with fused attention included, building a config's model in
its library's scope, fake batches of a given size, and the aten operators a
step dispatches (:class:`OpRecorder`, :func:`training_step_ops`).

MMEngine's ``FlopAnalyzer`` traces the model and counts every operator it
has a handle for; ``F.scaled_dot_product_attention`` (the fused attention
all pvt_mm blocks use) has none, so plain use would silently leave the
attention matmuls out. :func:`flop_analyzer` registers a handle for it.
FLOPs are counted the way the PVT/CvT papers (and fvcore/MMEngine) count
them: one multiply-accumulate = one FLOP.
"""
import json
import os
import subprocess
import sys
from typing import Any, List, Optional, Sequence

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

from .runner import init_scope

#: scope -> (module with the data sample class, class name)
DATA_SAMPLES = {
    'mmdet': ('mmdet.structures', 'DetDataSample'),
    'mmseg': ('mmseg.structures', 'SegDataSample'),
    'mmpretrain': ('mmpretrain.structures', 'DataSample'),
}


def sdpa_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """MACs of ``scaled_dot_product_attention(q, k, v)``: ``q @ k^T`` plus
    ``attn @ v`` (softmax and scaling are not counted, like other
    elementwise ops)."""
    from mmengine.analysis.jit_handles import get_shape
    q, k, v = (get_shape(t) for t in inputs[:3])
    batch = 1
    for d in q[:-2]:
        batch *= d
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def flop_analyzer(model: nn.Module, inputs):
    """``FlopAnalyzer`` that also counts fused attention, warnings off."""
    from mmengine.analysis import FlopAnalyzer
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.set_op_handle('aten::scaled_dot_product_attention', sdpa_flop_jit)
    return (analyzer.unsupported_ops_warnings(False)
            .uncalled_modules_warnings(False).tracer_warnings('none'))


def count_macs(model: nn.Module, *inputs: torch.Tensor) -> int:
    """Multiply-accumulates of one ``model(*inputs)`` call."""
    with torch.no_grad():
        return int(flop_analyzer(model, inputs).total())


def build_model(cfg, device: str = 'cpu'):
    """``(model, scope)``: ``cfg.model`` built in the config's scope (mmdet,
    mmseg or mmpretrain), in eval mode, without loading pretrained weights
    (only shapes and speed matter here)."""
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, init_default_scope
    if 'model' not in cfg:
        raise SystemExit(f'{cfg.filename} has no `model` to build')
    scope = init_scope(cfg)
    init_default_scope(scope)
    model = MODELS.build(cfg.model)
    return revert_sync_batchnorm(model).to(device).eval(), scope


def fake_data(scope: str, shape: Sequence[int], batch_size: int = 1,
              device: str = 'cpu', with_gt: bool = False) -> dict:
    """A raw batch (what a dataloader yields) of random uint8 images of
    ``shape`` = (H, W), with the meta information each task's heads read.

    ``with_gt`` adds random ground truth for a training step: four boxes
    with labels < 10 and their filled-box instance masks per image (mmdet;
    heads without a mask branch ignore the masks) or a label map with
    values < 10 (mmseg)."""
    import importlib
    module, name = DATA_SAMPLES[scope]
    sample_cls = getattr(importlib.import_module(module), name)
    h, w = shape
    gen = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(batch_size):
        s = sample_cls()
        if scope != 'mmpretrain':
            s.set_metainfo(dict(img_shape=(h, w), ori_shape=(h, w),
                                pad_shape=(h, w), scale_factor=(1., 1.),
                                padding_size=[0, 0, 0, 0]))
        if with_gt:
            _add_fake_gt(s, scope, h, w, gen, device)
        samples.append(s)
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=gen)
              .to(device) for _ in range(batch_size)]
    return dict(inputs=images, data_samples=samples)


def _add_fake_gt(sample, scope: str, h: int, w: int, gen: torch.Generator,
                 device: str) -> None:
    if scope == 'mmdet':
        from mmdet.structures.mask import BitmapMasks
        from mmengine.structures import InstanceData
        xy = torch.rand(4, 2, generator=gen) * torch.tensor([w / 2, h / 2])
        wh = ((torch.rand(4, 2, generator=gen) * 0.4 + 0.1)
              * torch.tensor([w, h]))
        boxes = torch.cat([xy, xy + wh], 1)
        masks = torch.zeros(4, h, w, dtype=torch.uint8)
        for mask, (x0, y0, x1, y1) in zip(masks, boxes.long().tolist()):
            mask[y0:y1, x0:x1] = 1
        sample.gt_instances = InstanceData(
            bboxes=boxes.to(device),
            labels=torch.randint(0, 10, (4,), generator=gen).to(device),
            masks=BitmapMasks(masks.numpy(), h, w))
    elif scope == 'mmseg':
        from mmengine.structures import PixelData
        sample.gt_sem_seg = PixelData(data=torch.randint(
            0, 10, (1, h, w), generator=gen).to(device))
    else:
        sample.set_gt_label(torch.randint(0, 10, (1,), generator=gen).item())


def fake_batch(model: nn.Module, scope: str, shape: Sequence[int],
               batch_size: int = 1, device: str = 'cpu') -> dict:
    """:func:`fake_data` through the model's data preprocessor."""
    return model.data_preprocessor(
        fake_data(scope, shape, batch_size, device), training=False)


class TensorForward(nn.Module):
    """``model(inputs, data_samples, mode='tensor')`` as a one-input module."""

    def __init__(self, model: nn.Module, data_samples):
        super().__init__()
        self.model = model
        self.data_samples = data_samples

    def forward(self, inputs: torch.Tensor):
        return self.model(inputs, self.data_samples, mode='tensor')


DEFAULT_SHAPES = {'mmdet': (800, 1333), 'mmseg': (512, 512),
                  'mmpretrain': (224, 224)}


def input_shape(shape: Optional[Sequence[int]], scope: str):
    """``(H, W)`` from ``--shape H [W]``, or the task's usual test size."""
    if not shape:
        return DEFAULT_SHAPES[scope]
    return (shape[0], shape[-1])


def run_worker(script: str, kind: str, spec: dict, timeout: float,
               cwd: Optional[str] = None, **env) -> Optional[dict]:
    """Run ``python SCRIPT --worker KIND SPEC_JSON`` in a fresh interpreter
    with ``spec['threads']`` OpenMP / MKL threads (the benchmarks measure
    each cell in its own process, so peak memory is that cell's alone).

    The worker prints ``RESULT <json>``; that dict is returned, or ``None``
    with a one-line note when the worker timed out or failed. ``env`` adds
    environment variables.
    """
    env = dict(os.environ, OMP_NUM_THREADS=str(spec['threads']),
               MKL_NUM_THREADS=str(spec['threads']), PYTHONWARNINGS='ignore',
               **env)
    cmd = [sys.executable, os.path.abspath(script), '--worker', kind,
           json.dumps(spec)]
    label = f'{kind} {spec.get("model", "")} {spec.get("impl", "")}'.strip()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                              timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired:
        print(f'  ! {label} timed out after {timeout:.0f} s', flush=True)
        return None
    for line in proc.stdout.splitlines():
        if line.startswith('RESULT '):
            return json.loads(line[len('RESULT '):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-4:]
    print(f'  ! {label} failed (exit {proc.returncode}): ' + ' | '.join(tail),
          flush=True)
    return None


def replace_doc_block(doc: str, begin: str, end: str, block: str) -> None:
    """Replace what lies between the markers ``begin`` and ``end`` in the
    markdown file ``doc`` by ``block`` (the markers stay): how the benchmark
    scripts put their generated tables into docs/benchmarks.md."""
    with open(doc) as f:
        text = f.read()
    if begin not in text or end not in text:
        raise SystemExit(f'{doc} has no {begin} ... {end} block to '
                         f'fill; add the two markers where the table goes')
    head, rest = text.split(begin, 1)
    with open(doc, 'w') as f:
        f.write(head + begin + '\n' + block + end + rest.split(end, 1)[1])


def time_calls(step, warmup: int, repeats: int):
    """``(wall seconds, process CPU seconds)`` of each of ``repeats`` calls
    of ``step()`` after ``warmup`` untimed ones (the timing loop of both
    benchmark scripts; ``step`` synchronises CUDA itself)."""
    import time
    times, cpu = [], []
    for i in range(warmup + repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    return times, cpu


#: Why ``--in-process`` (both benchmark scripts) is refused off CUDA.
IN_PROCESS_NEEDS_CUDA = (
    "--in-process needs --device cuda: on the CPU the peak memory is the "
    "process's, so every cell needs its own process")


def dispatch_worker(script: str, workers: dict, kind: str, spec: dict,
                    timeout: float, in_process: bool = False,
                    cwd: Optional[str] = None, **env) -> Optional[dict]:
    """One benchmark cell: :func:`run_worker` (a fresh interpreter running
    ``script``), or with ``in_process`` :func:`call_in_process` of
    ``workers[kind]`` here, with ``env`` set in this process instead."""
    if in_process:
        os.environ.update(env)
        return call_in_process(workers[kind], spec)
    return run_worker(script, kind, spec, timeout, cwd=cwd, **env)


def call_in_process(fn, spec: dict) -> Optional[dict]:
    """``fn(spec)`` in this interpreter, the in-process counterpart of
    :func:`run_worker` (``--in-process`` of the benchmark scripts): no
    import cost per cell, no isolation. Only for CUDA, where peak memory is
    ``torch.cuda.max_memory_allocated`` after a reset and does not need a
    fresh process; freed memory is returned to the driver after each cell.
    Returns ``None`` with a one-line note when ``fn`` raises."""
    import gc
    label = f'{spec.get("model", "")} {spec.get("impl", "")}'.strip()
    try:
        return fn(spec)
    except Exception as e:  # a failed cell must not end the whole run
        print(f'  ! {label} failed: {type(e).__name__}: {e}', flush=True)
        return None
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# Operator counts: what a launch-bound step pays for. On a GPU, a training
# step of a backbone at classification size costs about one kernel launch
# per operator more than its arithmetic, so the number of operators is a
# device-independent proxy for that overhead (docs/benchmarks.md,
# "Operator counts"; tests/execution/test_op_count.py).

#: aten operators that return a tensor of their own yet compute nothing:
#: allocations (memory from the caching allocator, no kernel) and
#: ``_unsafe_view`` (a view whose schema does not say so).
NO_KERNEL_OPS = frozenset({
    'aten::empty', 'aten::empty_like', 'aten::empty_strided',
    'aten::new_empty', 'aten::new_empty_strided', 'aten::_unsafe_view'})


def is_view_op(func) -> bool:
    """Whether an aten operator only makes a view: its schema returns an
    alias of an input that it does not write (``view``, ``permute``,
    ``t``, ``transpose``, ``expand``, ``detach``, ``unbind``,
    ``as_strided``, ``alias``, ...; ``Tensor(a)`` in the schema). In-place
    ops return their input too, but write it (``Tensor(a!)``): they compute."""
    return any(r.alias_info is not None and not r.alias_info.is_write
               for r in func._schema.returns)


def is_compute_op(func) -> bool:
    """Whether an aten operator does work on the device (launches a kernel
    there): an ``aten`` operator (not ``prim::device`` and the like, which
    only read metadata), neither a view (:func:`is_view_op`) nor one of
    :data:`NO_KERNEL_OPS`. Counted as dispatched: an operator whose kernel
    calls others (a convolution converting its input's layout, say) counts
    once, as it does in the peers."""
    name = func._schema.name
    return (name.startswith('aten::') and name not in NO_KERNEL_OPS
            and not is_view_op(func))


class OpRecorder(TorchDispatchMode):
    """Records every aten operator dispatched inside the ``with`` block as
    ``(op, [input shapes])`` in ``self.ops``: the forward, and the backward
    where autograd runs it in this thread (on CPU, all of it). Only this
    thread's operators are recorded."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append((func, [tuple(a.shape) for a in args
                                if isinstance(a, torch.Tensor)]))
        return func(*args, **(kwargs or {}))

    def compute_ops(self) -> list:
        """The recorded ``(op, shapes)`` whose op :func:`is_compute_op`."""
        return [o for o in self.ops if is_compute_op(o[0])]


def outputs_list(out) -> list:
    """A backbone's outputs as a list (from a list, tuple, dict or tensor)."""
    if isinstance(out, dict):
        out = list(out.values())
    return list(out) if isinstance(out, (list, tuple)) else [out]


def training_step_ops(model: nn.Module, x: torch.Tensor) -> OpRecorder:
    """The :class:`OpRecorder` of one training step of a backbone:
    ``train()`` mode, forward, loss = sum of the outputs' means, backward,
    starting with no gradients (none is accumulated into an old one) and
    leaving none."""
    model.train()
    model.zero_grad(set_to_none=True)
    with OpRecorder() as rec:
        sum(o.mean() for o in outputs_list(model(x))).backward()
    model.zero_grad(set_to_none=True)
    return rec
