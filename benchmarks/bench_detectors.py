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
  pvt_mm.deploy and run by ONNX Runtime;
* ``sem_fpn_b2`` at 512x512: configs/sem_fpn_pvt_v2_b2_ade20k_40k.py in
  PyTorch and in ONNX Runtime.

ONNX Runtime cells, one per file (pvt_mm.deploy.optimize): ``ours-ort`` the
portable file (standard operators), ``ours-ort-fused`` the fused-attention
file with ONNX Runtime's graph optimizations (``model.ort.onnx``),
``ours-ort-int8`` that file with int8 MatMul weights (``model.int8.onnx``),
``ours-ort-int8c`` that and the neck's and head's convolutions in int8
with activation ranges calibrated on two random images (a speed
measurement: its accuracy needs real calibration images,
benchmarks/ort_variants_accuracy.py).
``--ort-graph end2end`` (and ``auto``, the default, where the family has
an end-to-end export) runs the end-to-end file: raw uint8 image in, final
detections / label map out, everything in ONNX Runtime (the image is at
the model's test size already, as for ``ours``, so no resize is timed);
``network`` runs the network-only file through ``pvt_mm.deploy.ORTModel``
with the data preprocessing and post-processing in PyTorch.

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

``--train-step`` (issue 20) is the training step users run, like for like:
RetinaNet, Mask R-CNN (2 images of 800x1333) and Semantic FPN (4 crops of
512x512), the recipes' batch per GPU, each with our PVTv2-B2
(configs/*_pvt_v2_b2_*), MMDetection's built-in ``PyramidVisionTransformerV2``
(``mmdet::pvt/retinanet_pvtv2-b2_fpn_1x_coco.py``; elsewhere our config with
that backbone) and timm's ``pvt_v2_b2`` (MMPretrain's ``TIMMBackbone``), the
same drop-path rate (0.1) and the recipe's optimizer built by MMEngine
(``AmpOptimWrapper`` for fp16 / bf16 AMP); ``model.train_step`` timed in
one process, round-robin over the implementations; images/s, spread over
the rounds and each implementation's own peak memory, one JSON line per
cell::

    python benchmarks/bench_detectors.py --train-step --device cuda \
        --json benchmarks/results/train_step_cuda.jsonl
    python benchmarks/bench_detectors.py --train-step --from-json RUN.jsonl \
        --write-docs                                       # the doc table
    python benchmarks/bench_detectors.py --train-step --quick   # CPU smoke
"""
import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from typing import Dict, List, Optional

from harness.measure import parse_size, peak_memory_bytes, peak_rss_bytes
from harness.workers import print_result

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(REPO, 'docs', 'benchmarks.md')

#: ONNX Runtime cell -> the file it runs (pvt_mm.deploy.optimize.VARIANTS);
#: each exports our config.
ORT_VARIANTS = {'ours-ort': 'plain', 'ours-ort-fused': 'fused',
                'ours-ort-int8': 'int8', 'ours-ort-int8c': 'int8c'}


def _impls(ours: str, **peers: str) -> Dict[str, str]:
    """impl -> config: ours, its ONNX Runtime cells, then the peers."""
    return {'ours': ours, **peers, **dict.fromkeys(ORT_VARIANTS, ours)}


MODELS = {
    'retinanet_b2': dict(
        size='800x1333', scope='mmdet',
        impls=_impls('configs/retinanet_pvt_v2_b2_coco.py',
                     mmdet='mmdet::pvt/retinanet_pvtv2-b2_fpn_1x_coco.py')),
    'sem_fpn_b2': dict(
        size='512x512', scope='mmseg',
        impls=_impls('configs/sem_fpn_pvt_v2_b2_ade20k_40k.py')),
}

#: --ort-graph choices: the end-to-end file, the network-only one, or
#: end-to-end where the family has a builder
ORT_GRAPHS = ('auto', 'end2end', 'network')


#: --dtype -> the torch.autocast dtype (None: fp32, autocast off)
DTYPES = {'fp32': None, 'bf16': 'bfloat16', 'fp16': 'float16'}


WORKLOADS = ('test', 'train')


def bench_config(config: str):
    """The config (a file under the repo or an ``mmdet::`` name) with its
    pretrained weights switched off (speed does not depend on them)."""
    from mmengine.config import Config
    if '::' in config:  # a config shipped inside mmdet
        from mmengine.hub import get_config
        cfg = get_config(config)
    else:
        cfg = Config.fromfile(os.path.join(REPO, config))
    if cfg.model.get('backbone', {}).get('init_cfg'):
        cfg.model.backbone.init_cfg = None
    if cfg.model.get('pretrained'):
        cfg.model.pretrained = None
    return cfg


def build(config, device: str):
    """The model of ``config`` (a name for :func:`bench_config`, or a
    loaded ``Config``) with random weights."""
    from pvt_mm.deploy import load_model
    cfg = bench_config(config) if isinstance(config, str) else config
    return load_model(cfg, device=device)


def resolve_graph(model, graph: str) -> str:
    """``'end2end'`` or ``'network'``: ``'auto'`` is end-to-end where the
    model's family has an end-to-end export."""
    if graph != 'auto':
        return graph
    from pvt_mm.deploy import ExportError, build_end2end
    try:
        build_end2end(model)
    except ExportError:
        return 'network'
    return 'end2end'


def export_worker(spec: dict) -> dict:
    """Export the file of ``spec['variant']`` (plain / fused / int8) of
    ``spec['graph']``; ``spec['onnx']`` names the portable file, the others
    lie beside it (:func:`pvt_mm.deploy.optimize.variant_path`)."""
    import torch
    torch.set_num_threads(spec['threads'])
    from pvt_mm.deploy import export_end2end, export_onnx
    from pvt_mm.deploy.optimize import export_ort_variants
    model = build(spec['config'], 'cpu')
    graph = resolve_graph(model, spec.get('graph', 'network'))
    variant = spec.get('variant', 'plain')
    shape = parse_size(spec['size'])
    start = time.perf_counter()
    path = spec['onnx']
    if variant == 'plain':
        exporter = export_end2end if graph == 'end2end' else export_onnx
        exporter(model, path, shape=shape)
    elif variant == 'int8c':  # calibrated on random images: speed only
        from pvt_mm.analysis import fake_data
        from pvt_mm.deploy.optimize import calibration_feeds
        batches = [fake_data(spec['scope'], (256, 256)) for _ in range(2)]
        feeds = calibration_feeds(model, batches, graph == 'end2end')
        path = export_ort_variants(
            model, path[:-len('.onnx')] + '_calibrated.onnx',
            variants=('int8', ), end2end=graph == 'end2end', shape=shape,
            int8_options=dict(calibration=feeds))['int8']
    else:
        path = export_ort_variants(model, path, variants=(variant, ),
                                   end2end=graph == 'end2end',
                                   shape=shape)[variant]
    from pvt_mm.deploy.optimize import read_props
    return dict(export_s=time.perf_counter() - start, graph=graph,
                variant=variant, onnx=path,
                kind=read_props(path)['pvt_mm.kind'])


class End2EndRunner:
    """An end-to-end file in an ONNX Runtime session, fed the raw batch of
    :func:`pvt_mm.analysis.fake_data` (uint8 images at the test size,
    ``ori_shape`` = their size) through the graph's contract
    (pvt_mm.deploy.end2end)."""

    def __init__(self, path: str, threads: int, providers,
                 profile_prefix: Optional[str] = None):
        import onnxruntime as ort
        from pvt_mm.deploy.optimize import read_props, session_options
        options = session_options(threads)
        if profile_prefix:
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix
        self.session = ort.InferenceSession(path, options,
                                            providers=providers)
        self.dtype = json.loads(read_props(path)['pvt_mm.input'])['dtype']

    def test_step(self, data):
        import numpy as np
        images = np.stack([img.cpu().numpy() for img in data['inputs']])
        ori = np.array([s.ori_shape for s in data['data_samples']],
                       dtype=np.int64)
        return self.session.run(None, {'image': images.astype(self.dtype),
                                       'ori_shape': ori})


def cell_worker(spec: dict) -> dict:
    import torch
    torch.set_num_threads(spec['threads'])
    from pvt_mm.analysis import fake_data
    from harness.measure import time_calls
    device = spec['device']
    model = build(spec['config'], device)
    runner = model
    if spec['impl'] in ORT_VARIANTS:
        from pvt_mm.deploy import ORTModel
        providers = (['CUDAExecutionProvider', 'CPUExecutionProvider']
                     if device == 'cuda' else ['CPUExecutionProvider'])
        prefix = (os.path.join(tempfile.gettempdir(), 'ort_profile')
                  if spec['profile'] else None)
        if spec.get('graph') == 'end2end':
            runner = End2EndRunner(spec['onnx'], spec['threads'], providers,
                                   prefix)
        else:
            runner = ORTModel(spec['onnx'], model, weights_loaded=False,
                              providers=providers, num_threads=spec['threads'],
                              profile_prefix=prefix)
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
    peak = peak_memory_bytes(device) / 2**30
    result = dict(spec, times=times, median_s=statistics.median(times),
                  cpu_s=statistics.median(cpu), peak_gib=peak)
    if train:
        result['loss'] = last_loss[0]
    if spec['profile']:
        result['profile'] = profile(runner, step, spec)
    return result


def profile(runner, step, spec) -> List[list]:
    """Top operators of one more call: [name, ms, share]."""
    if spec['impl'] in ORT_VARIANTS:
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
    from harness.workers import dispatch_worker
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
                impl = r['impl'] + (f' ({r["graph"]})' if r.get('graph')
                                    else '')
                lines.append(
                    f'| {model} | {r["size"]} | {workload} | '
                    f'{r.get("dtype", "fp32")} | {impl} | '
                    f'{r["median_s"]:.3f} | {r["cpu_s"]:.2f} | '
                    f'{r["peak_gib"]:.2f} | {ratio} |')
    return '\n'.join(lines)


# ------------------------------------------ like-for-like training step
# (issue 20): ours, MMDetection's built-in PVTv2 and timm's pvt_v2_b2 in the
# same detector / segmentor, trained with the recipe's optimizer at the
# recipe's batch per GPU, interleaved round-robin in one process.

#: model -> our config, its task scope, the recipe's input size, and the
#: config MMDetection ships for it with its built-in PVTv2 (if any; else
#: ours with the backbone replaced by :data:`PEER_BACKBONES`' ``mmdet``)
TRAIN_STEP_MODELS = {
    'retinanet_b2': dict(
        config='configs/retinanet_pvt_v2_b2_coco.py', scope='mmdet',
        size='800x1333',
        mmdet_config='mmdet::pvt/retinanet_pvtv2-b2_fpn_1x_coco.py'),
    'mask_rcnn_b2': dict(
        config='configs/mask_rcnn_pvt_v2_b2_coco.py', scope='mmdet',
        size='800x1333'),
    'sem_fpn_b2': dict(
        config='configs/sem_fpn_pvt_v2_b2_ade20k_40k.py', scope='mmseg',
        size='512x512'),
}
#: The peers' PVTv2 as a backbone config (in any scope): mmdet's
#: ``PyramidVisionTransformerV2`` (B2: the settings of
#: mmdet::pvt/retinanet_pvtv2-b2_fpn_1x_coco.py), and timm's ``pvt_v2_*``
#: through MMPretrain's ``TIMMBackbone`` (features of all four stages).
PEER_BACKBONES = {
    'mmdet': dict(type='mmdet.PyramidVisionTransformerV2'),
    'timm': dict(type='mmpretrain.TIMMBackbone', features_only=True,
                 out_indices=(0, 1, 2, 3)),
}
#: --arch -> each implementation's settings and the backbone's channels.
#: The recipes are B2; B0 only makes ``--quick`` fast enough for a test.
ARCHES = {
    'b2': dict(ours=dict(arch='b2'),
               mmdet=dict(embed_dims=64, num_layers=[3, 4, 6, 3]),
               timm=dict(model_name='pvt_v2_b2'),
               channels=[64, 128, 320, 512]),
    'b0': dict(ours=dict(arch='b0'),
               mmdet=dict(embed_dims=32, num_layers=[2, 2, 2, 2]),
               timm=dict(model_name='pvt_v2_b0'), channels=[32, 64, 160, 256]),
}
#: modules that register each implementation's backbone
PEER_IMPORTS = {'ours': 'pvt_mm', 'mmdet': 'mmdet.models',
                'timm': 'mmpretrain.models', 'ours-compiled': 'pvt_mm'}
#: ``ours-compiled``: ours with backbone and neck compiled as
#: ``tools/train.py --compile`` does (inductor, static shapes, one graph
#: each); its warm-up steps include the compilation. Asked for by name.
TRAIN_IMPLS = ('ours', 'mmdet', 'timm', 'ours-compiled')
DEFAULT_TRAIN_IMPLS = ('ours', 'mmdet', 'timm')
#: precision -> (AmpOptimWrapper dtype, or None: OptimWrapper in fp32; TF32
#: for matmuls and cuDNN, set together for every implementation)
PRECISIONS = {'fp16': ('float16', False), 'bf16': ('bfloat16', False),
              'fp32-tf32': (None, True), 'fp32': (None, False)}
TRAIN_DOC_BEGIN = '<!-- train-step-table:begin -->'
TRAIN_DOC_END = '<!-- train-step-table:end -->'


def train_step_config(model: str, impl: str, arch: str = 'b2'):
    """``(cfg, ours)``: the config of ``impl`` in ``model`` and our own
    recipe config (whose optimizer, batch and drop-path rate all
    implementations use), both without pretrained weights. ``arch`` other
    than the recipes' b2 changes the backbones and the neck's inputs."""
    import importlib
    info = TRAIN_STEP_MODELS[model]
    ours = bench_config(info['config'])
    if impl in ('ours', 'ours-compiled'):
        cfg = copy.deepcopy(ours)
    elif impl == 'mmdet' and info.get('mmdet_config'):
        cfg = bench_config(info['mmdet_config'])
        # the same detector around the backbone: where mmdet's config
        # differs from ours (e.g. our RetinaNet's fp32 focal loss), ours
        cfg.aligned_with_ours = align_model(cfg.model, ours.model)
    else:
        cfg = copy.deepcopy(ours)
        cfg.model.backbone = dict(PEER_BACKBONES[impl], **ARCHES['b2'][impl])
    if arch != 'b2':
        cfg.model.backbone.update(
            ARCHES[arch]['ours' if impl == 'ours-compiled' else impl])
        cfg.model.neck.in_channels = ARCHES[arch]['channels']
    importlib.import_module(PEER_IMPORTS[impl])
    cfg.model.backbone.drop_path_rate = ours.model.backbone.drop_path_rate
    return cfg, ours


def align_model(model: dict, ref: dict, path: str = '') -> List[str]:
    """Set every setting of the ``model`` config that differs from
    ``ref`` outside the backbone (and the scope) to ``ref``'s; the dotted
    paths that changed."""
    changed = []
    for key in sorted(set(model) | set(ref)):
        if (not path and key == 'backbone') or key == '_scope_':
            continue
        mine, theirs = model.get(key), ref.get(key)
        if isinstance(mine, dict) and isinstance(theirs, dict):
            changed += align_model(mine, theirs, f'{path}{key}.')
        elif mine != theirs:
            model[key] = copy.deepcopy(theirs)
            changed.append(f'{path}{key}')
    return changed


def _resident_bytes(model, optim_wrapper, device: str) -> int:
    """Bytes this model keeps on ``device`` between steps: parameters,
    buffers, gradients, optimizer state."""
    import torch
    tensors = list(model.parameters()) + list(model.buffers())
    tensors += [p.grad for p in model.parameters() if p.grad is not None]
    for state in optim_wrapper.optimizer.state.values():
        tensors += [v for v in state.values() if torch.is_tensor(v)]
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                for t in tensors if t.device.type == device}
    return sum(storages.values())


def _spread(values: List[float]) -> dict:
    """Median, quartiles and range of per-round step times."""
    q1, _, q3 = (statistics.quantiles(values, n=4, method='inclusive')
                 if len(values) > 1 else values * 3)
    return dict(median_s=statistics.median(values), q1_s=q1, q3_s=q3,
                min_s=min(values), max_s=max(values))


class TrainStepCell:
    """One implementation of one model at one precision: the model, its
    optimizer wrapper (built from the recipe's ``optim_wrapper`` by MMEngine)
    and the measurements of its timed steps."""

    def __init__(self, impl: str, model, ours_cfg, precision: str,
                 device: str, common: dict):
        from mmengine.optim import build_optim_wrapper

        from pvt_mm.engine.runner import use_amp
        self.impl, self.model, self.device = impl, model, device
        self.common = common  # what the cell's record starts with
        amp_dtype, _ = PRECISIONS[precision]
        cfg = copy.deepcopy(ours_cfg)
        if amp_dtype:  # what tools/train.py --amp does, plus the dtype
            use_amp(cfg)
            cfg.optim_wrapper.dtype = amp_dtype
        self.optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
        self.optim_cfg = cfg.optim_wrapper.to_dict()
        self.rounds, self.peaks, self.raw_peaks = [], [], []
        self.loss, self.error, self.skipped = None, None, 0

    def step(self, data) -> None:
        import torch
        log_vars = self.model.train_step(data, self.optim_wrapper)
        self.loss = log_vars['loss'].item()
        if self.device == 'cuda':
            torch.cuda.synchronize()

    def timed(self, data, steps: int) -> None:
        """``steps`` timed steps in this cell's own peak-memory window."""
        import torch
        from harness.measure import time_calls
        cuda = self.device == 'cuda'
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            # what the other implementations keep on the GPU meanwhile
            # (everything allocated but this model, its optimizer state and
            # the batch)
            others = (torch.cuda.memory_allocated()
                      - _resident_bytes(self.model, self.optim_wrapper,
                                        'cuda')
                      - sum(t.untyped_storage().nbytes()
                            for t in data['inputs']))
        scaler = getattr(self.optim_wrapper, 'loss_scaler', None)
        scale = scaler.get_scale() if scaler else None
        times, _ = time_calls(lambda: self.step(data), 0, steps)
        self.rounds.append(sum(times) / steps)
        if scaler and scaler.get_scale() < scale:
            # fp16's dynamic loss scale backed off: a timed step found
            # inf/nan gradients and skipped the optimizer step
            self.skipped += 1
        if cuda:
            raw = torch.cuda.max_memory_allocated()
            self.raw_peaks.append(raw / 2**30)
            self.peaks.append((raw - others) / 2**30)
        else:
            self.peaks.append(peak_rss_bytes() / 2**30)

    def record(self) -> dict:
        backbone = self.model.backbone
        inner = getattr(backbone, 'timm_model', None)
        r = dict(self.common, impl=self.impl,
                 backbone=type(backbone).__name__,
                 backbone_module=type(backbone).__module__,
                 # timm's own model inside MMPretrain's TIMMBackbone
                 backbone_inner=(type(inner).__module__ + '.'
                                 + type(inner).__name__) if inner else None,
                 params_m=sum(p.numel() for p in self.model.parameters())
                 / 1e6,
                 optim_wrapper=self.optim_cfg, loss=self.loss,
                 rounds_with_skipped_step=self.skipped,
                 round_s=self.rounds, peak_gib=max(self.peaks, default=None),
                 peak_raw_gib=max(self.raw_peaks, default=None),
                 error=self.error)
        if self.rounds:
            r.update(_spread(self.rounds))
            r['imgs_per_s'] = self.common['batch'] / r['median_s']
        return r


def set_tf32(enabled: bool) -> dict:
    import torch
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    return dict(matmul=torch.backends.cuda.matmul.allow_tf32,
                cudnn=torch.backends.cudnn.allow_tf32)


def train_step_bench(args) -> List[dict]:
    """Measure every (precision, model) group: build the implementations
    once (kept for later precisions), give each a fresh optimizer wrapper,
    warm up, then ``rounds`` rounds in which each implementation runs
    ``steps`` timed steps, the order rotating every round. Each cell is
    appended to ``args.json`` (JSON Lines) as soon as its group is done."""
    import logging

    import torch
    from mmengine.logging import MMLogger

    from pvt_mm.analysis import fake_data
    torch.set_num_threads(args.threads)
    MMLogger.get_current_instance().setLevel(logging.ERROR)  # init logs
    device = args.device
    meta = dict(kind='meta', date=time.strftime('%Y-%m-%d %H:%M'),
                device=device, machine=platform.machine(),
                gpu=(torch.cuda.get_device_name(0) if device == 'cuda'
                     else None),
                torch=torch.__version__, threads=args.threads,
                rounds=args.rounds, steps=args.steps, warmup=args.warmup,
                cudnn_benchmark=torch.backends.cudnn.benchmark,
                peak_memory=('torch.cuda.max_memory_allocated in each '
                             'cell\'s window, minus what the other '
                             'implementations keep resident'
                             if device == 'cuda' else
                             'the process\'s peak RSS (all cells together)'))
    write_jsonl(args.json, meta, mode='w')
    built: Dict[tuple, object] = {}  # (model, impl) -> the built model
    configs: Dict[tuple, tuple] = {}
    records = []
    for precision in args.precisions:
        tf32 = set_tf32(PRECISIONS[precision][1])
        for name in args.models:
            info = TRAIN_STEP_MODELS[name]
            size = args.size or info['size']
            cells, failed = [], []
            for impl in args.impls:
                if (name, impl) not in configs:
                    configs[name, impl] = train_step_config(name, impl,
                                                            args.arch)
                cfg, ours = configs[name, impl]
                batch = args.batch or ours.train_dataloader.batch_size
                common = dict(kind='cell', model=name, precision=precision,
                              tf32=tf32, size=size, batch=batch,
                              arch=args.arch,
                              backbone_cfg=cfg.model.backbone.to_dict(),
                              config=info['config'] if impl != 'mmdet' or
                              not info.get('mmdet_config')
                              else info['mmdet_config'],
                              drop_path_rate=cfg.model.backbone.drop_path_rate,
                              aligned_with_ours=cfg.get('aligned_with_ours',
                                                        []),
                              own_optimizer=cfg.optim_wrapper.optimizer
                              .to_dict())
                try:
                    if (name, impl) not in built:
                        torch.manual_seed(0)
                        built[name, impl] = build(cfg, device).train()
                        if impl == 'ours-compiled':
                            from pvt_mm.engine.compile import compile_modules
                            compile_modules(built[name, impl],
                                            backend='inductor',
                                            fullgraph=True, dynamic=False)
                    cells.append(TrainStepCell(impl, built[name, impl], ours,
                                               precision, device, common))
                except Exception as e:  # noqa: BLE001 (a cell may fail)
                    failed.append(dict(common, impl=impl,
                                       error=f'{type(e).__name__}: {e}'))
            data = fake_data(info['scope'], parse_size(size), batch, device,
                             with_gt=True)
            print(f'[train-step] {name} {precision} {size} batch {batch}: '
                  f'{", ".join(c.impl for c in cells)}', flush=True)
            for cell in cells:
                try:
                    for _ in range(args.warmup):
                        cell.step(data)
                except Exception as e:  # noqa: BLE001
                    cell.error = f'{type(e).__name__}: {e}'
            live = [c for c in cells if c.error is None]
            for r in range(args.rounds if live else 0):
                for cell in live[r % len(live):] + live[:r % len(live)]:
                    if cell.error is None:
                        try:
                            cell.timed(data, args.steps)
                        except Exception as e:  # noqa: BLE001
                            cell.error = f'{type(e).__name__}: {e}'
            for rec in failed + [c.record() for c in cells]:
                write_jsonl(args.json, rec)
                records.append(rec)
                print('    ' + describe_cell(rec), flush=True)
            del cells, live, data
            if device == 'cuda':
                torch.cuda.empty_cache()
    return [meta] + records


def write_jsonl(path: str, record: dict, mode: str = 'a') -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, mode) as f:
        f.write(json.dumps(record) + '\n')


def read_jsonl(paths: List[str]) -> List[dict]:
    records = []
    for path in paths:
        with open(path) as f:
            records += [json.loads(line) for line in f if line.strip()]
    return records


def describe_cell(r: dict) -> str:
    if r.get('error') or not r.get('round_s'):
        return f'{r["impl"]:6s} failed: {r.get("error")}'
    return (f'{r["impl"]:6s} ({r["backbone"]}) {r["imgs_per_s"]:.2f} img/s, '
            f'step {r["median_s"]:.3f} s [{r["min_s"]:.3f}-{r["max_s"]:.3f}]'
            f', peak {r["peak_gib"]:.2f} GiB, loss {r["loss"]:.3f}')


#: issue 20's targets at fp16 AMP: impl -> (ours' speed-up at least, ours'
#: peak memory at most this fraction of the impl's)
TRAIN_TARGETS = {'mmdet': (1.15, 0.7), 'timm': (1.0, 0.7)}
#: issue 20: ``--compile``'s step at least this much faster than ours eager
COMPILE_TARGET = 1.5


def train_step_markdown(records: List[dict]) -> str:
    """The doc table of a train-step run (its JSON Lines records)."""
    cells = [r for r in records if r.get('kind') == 'cell']
    metas = [r for r in records if r.get('kind') == 'meta']
    lines = []
    if metas:
        m = metas[0]
        lines.append(
            f"Measured {m['date']} on {m['gpu'] or m['machine']} "
            f"({m['device']}, torch {m['torch']}), {m['rounds']} rounds x "
            f"{m['steps']} step(s) per implementation after {m['warmup']} "
            f"warm-up, interleaved in one process; peak memory: "
            f"{m['peak_memory']}.\n")
    lines += ['| model | input x batch | precision | impl (backbone) | '
              'img/s | step s, median [IQR] (min-max) | peak GiB | '
              'ours speed-up | ours / impl peak | target |',
              '|---|---|---|---|---:|---|---:|---:|---:|---|']
    key = {}
    for r in cells:
        if r.get('median_s'):
            key[r['model'], r['precision'], r['impl']] = r
    for r in cells:
        head = (f"| {r['model']} | {r['size']} x {r['batch']} | "
                f"{r['precision']} | {r['impl']} "
                f"({r.get('backbone', '-')}) |")
        if not r.get('median_s'):
            lines.append(f"{head} failed: {r.get('error')} | | | | | |")
            continue
        ours = key.get((r['model'], r['precision'], 'ours'))
        speed = mem = target = '-'
        if ours and r['impl'] == 'ours-compiled':
            # the other way round: the compiled step's speed-up over ours
            s = ours['median_s'] / r['median_s']
            speed = f'compiled: {s:.2f}x'
            mem = f"{ours['peak_gib'] / r['peak_gib']:.2f}x"
            if r['precision'] == 'fp16':
                target = (f'compiled >= {COMPILE_TARGET}x ours: '
                          f"{'met' if s >= COMPILE_TARGET else 'missed'}")
        elif ours and r['impl'] != 'ours':
            s, m = r['median_s'] / ours['median_s'], (
                ours['peak_gib'] / r['peak_gib'])
            speed, mem = f'{s:.2f}x', f'{m:.2f}x'
            goal = TRAIN_TARGETS.get(r['impl'])
            if goal and r['precision'] == 'fp16':
                met = s >= goal[0] and m <= goal[1]
                target = (f">= {goal[0]}x at <= {goal[1]}x: "
                          f"{'met' if met else 'missed'}")
        lines.append(
            f"{head} {r['imgs_per_s']:.2f} | {r['median_s']:.3f} "
            f"[{r['q1_s']:.3f}-{r['q3_s']:.3f}] ({r['min_s']:.3f}-"
            f"{r['max_s']:.3f}) | {r['peak_gib']:.2f} | {speed} | {mem} | "
            f"{target} |")
    return '\n'.join(lines) + '\n'


def train_step_main(args) -> int:
    if args.from_json:
        records = read_jsonl(args.from_json)
    else:
        records = train_step_bench(args)
    table = train_step_markdown(records)
    print('\n' + table)
    if args.write_docs:
        from harness.measure import replace_doc_block
        replace_doc_block(DOC, TRAIN_DOC_BEGIN, TRAIN_DOC_END, table)
    # failed cells are in the table (e.g. a CUDA kernel without bf16);
    # fail only when nothing was measured
    return 0 if any(r.get('median_s') for r in records) else 1


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--models', nargs='+',
                   choices=sorted(set(MODELS) | set(TRAIN_STEP_MODELS)),
                   help=f'default: {" ".join(MODELS)}; with --train-step '
                   f'{" ".join(TRAIN_STEP_MODELS)}')
    p.add_argument('--impls', nargs='+',
                   help='default: ours mmdet ours-ort ours-ort-fused '
                   'ours-ort-int8 ours-ort-int8c; with --train-step '
                   f'{" ".join(TRAIN_IMPLS)}')
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
    p.add_argument('--ort-graph', choices=ORT_GRAPHS, default='auto',
                   help='ONNX Runtime cells: the end-to-end file (raw image '
                   'to detections / label map, all in ONNX Runtime), the '
                   'network-only file (pre- and post-processing in '
                   'PyTorch), or auto: end-to-end where the family has one')
    p.add_argument('--timeout', type=float, default=1800)
    p.add_argument('--json', help='write the results to this JSON file '
                   '(--train-step: JSON Lines, one record per cell, written '
                   'as the run goes)')
    t = p.add_argument_group(
        'like-for-like training step (issue 20): ours, mmdet\'s built-in '
        'PVTv2 and timm\'s pvt_v2_b2 in the same detector / segmentor, '
        'recipe optimizer and batch, interleaved in one process')
    t.add_argument('--train-step', action='store_true',
                   help='run this benchmark instead of the per-cell one')
    t.add_argument('--precisions', nargs='+', choices=list(PRECISIONS),
                   help='default: fp16 bf16 fp32-tf32 fp32 on CUDA, fp32 on '
                   'the CPU (MMEngine\'s AmpOptimWrapper needs CUDA)')
    t.add_argument('--rounds', type=int, default=5,
                   help='round-robin rounds (median and spread over them)')
    t.add_argument('--steps', type=int, default=1,
                   help='timed steps per implementation and round')
    t.add_argument('--arch', choices=list(ARCHES),
                   help='backbone size (default: b2, the recipes\'; b0 with '
                   '--quick)')
    t.add_argument('--batch', type=int,
                   help='images per step (default: the recipe\'s '
                   'train_dataloader.batch_size, i.e. per GPU)')
    t.add_argument('--from-json', nargs='+', metavar='JSONL',
                   help='measure nothing: print the table of these runs')
    t.add_argument('--write-docs', action='store_true',
                   help=f'put the table into {os.path.relpath(DOC, REPO)} '
                   f'({TRAIN_DOC_BEGIN} block)')
    p.add_argument('--worker', nargs=2, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def train_step_args(args):
    """--train-step's defaults and checks on the parsed arguments."""
    args.models = args.models or list(TRAIN_STEP_MODELS)
    args.impls = args.impls or list(DEFAULT_TRAIN_IMPLS)
    bad = (set(args.models) - set(TRAIN_STEP_MODELS)) | (
        set(args.impls) - set(TRAIN_IMPLS))
    if bad:
        raise SystemExit(f'--train-step measures models '
                         f'{" ".join(TRAIN_STEP_MODELS)} and impls '
                         f'{" ".join(TRAIN_IMPLS)}, not {" ".join(bad)}')
    if args.precisions is None:
        args.precisions = (list(PRECISIONS) if args.device == 'cuda'
                           else ['fp32'])
    amp = [p for p in args.precisions if PRECISIONS[p][0]]
    if amp and args.device != 'cuda':
        raise SystemExit(f'--precisions {" ".join(amp)} needs --device cuda '
                         f'(MMEngine\'s AmpOptimWrapper runs on CUDA only)')
    if args.quick:  # seconds on a CPU: tiny images, one timed step each
        args.size = args.size or '128x128'
        args.batch = args.batch or 2
        args.arch = args.arch or 'b0'
        args.rounds, args.steps, args.warmup = min(args.rounds, 2), 1, 0
    args.arch = args.arch or 'b2'
    if args.rounds < 1 or args.steps < 1 or args.warmup < 0:
        raise SystemExit('--rounds and --steps must be >= 1, --warmup >= 0')
    args.json = args.json or os.path.join(
        REPO, 'work_dirs', f'train_step_{args.device}.jsonl')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.in_process and args.device != 'cuda':
        from harness.workers import IN_PROCESS_NEEDS_CUDA
        raise SystemExit(IN_PROCESS_NEEDS_CUDA)
    if args.worker:
        kind, spec = args.worker
        print_result(WORKERS[kind](json.loads(spec)))
        return 0
    if args.train_step:
        return train_step_main(train_step_args(args))
    args.models = args.models or list(MODELS)
    args.impls = args.impls or ['ours', 'mmdet', *ORT_VARIANTS]
    if set(args.models) - set(MODELS):
        extra = ' '.join(sorted(set(args.models) - set(MODELS)))
        raise SystemExit(f'--models: {extra} only with --train-step')
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
            if impl in ORT_VARIANTS and (workload == 'train'
                                         or args.dtype != 'fp32'):
                continue  # ONNX Runtime runs the fp32 graph, inference only
            spec = dict(model=model, impl=impl, config=config, size=size,
                        scope=info['scope'], device=args.device,
                        dtype=args.dtype, workload=workload,
                        threads=args.threads, repeats=args.repeats,
                        warmup=args.warmup, profile=args.profile)
            if impl in ORT_VARIANTS:
                variant = ORT_VARIANTS[impl]
                onnx = os.path.join(args.onnx_dir, f'{model}_{size}_'
                                    f'{args.ort_graph}.onnx')
                key = (onnx, variant)
                if key not in exports:
                    print(f'[bench] exporting {model} at {size} '
                          f'({args.ort_graph}, {variant}) ...', flush=True)
                    exports[key] = spawn(
                        'export', dict(spec, onnx=onnx, variant=variant,
                                       graph=args.ort_graph), args.timeout)
                if exports[key] is None:
                    continue
                spec.update(onnx=exports[key]['onnx'],
                            graph=exports[key]['graph'], variant=variant)
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
