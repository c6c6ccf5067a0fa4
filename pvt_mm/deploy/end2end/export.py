"""Trace an end-to-end module (:func:`build_end2end`) into one ONNX file
with dynamic batch / height / width and the ``pvt_mm.*`` metadata the
torch-free runtime (:mod:`pvt_mm.runtime`) reads."""
import json
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..checks import check_input_size, model_fingerprint
from ..onnx_export import (DEFAULT_OPSET, ExportError, common_metadata,
                           graph_kind, min_input_size, trace_to_onnx,
                           write_metadata)
from . import DET_OUTPUTS, INPUTS, SEG_OUTPUTS, build_end2end
from .preprocess import Preprocess

INPUT_DTYPES = {'uint8': torch.uint8, 'float32': torch.float32}


#: Test-pipeline steps the end-to-end runtime repeats (Resize) or that do
#: not change the image (loading, annotations, packing).
KNOWN_TEST_STEPS = frozenset({'LoadImageFromFile', 'LoadAnnotations',
                              'Resize', 'PackDetInputs', 'PackSegInputs'})


def pipeline_resize(cfg) -> dict:
    """The ``Resize`` of ``cfg``'s test pipeline as the runtime repeats it:
    ``{'scale': [a, b], 'keep_ratio': bool}`` (mmcv's meaning of ``scale``:
    with ``keep_ratio`` the long and short side limits, else ``(w, h)``).
    :class:`ExportError` for a pipeline with steps the runtime does not
    repeat (they would be silently skipped)."""
    name = osp.basename(cfg.filename or 'the config')
    for loader in ('test_dataloader', 'val_dataloader'):
        dataset = (cfg.get(loader) or {}).get('dataset') or {}
        steps = list(dataset.get('pipeline') or [])
        if not steps:
            continue
        types = [str(step.get('type')).split('.')[-1] for step in steps]
        unknown = [t for t in types if t not in KNOWN_TEST_STEPS]
        if unknown:
            raise ExportError(
                f'{name}: the test pipeline step(s) {unknown} change the '
                f'image in a way the end-to-end runtime does not repeat (it '
                f'repeats {sorted(KNOWN_TEST_STEPS)}); export with '
                f'--no-end2end')
        resizes = [s for s, t in zip(steps, types) if t == 'Resize']
        if len(resizes) == 1 and resizes[0].get('scale') is not None:
            step = resizes[0]
            return {'scale': [int(s) for s in step['scale']],
                    'keep_ratio': bool(step.get('keep_ratio', False))}
        break
    raise ExportError(
        f'{name}: its test pipeline has no single Resize with a fixed scale, '
        f'which the end-to-end runtime repeats before the graph; export it '
        f'with --no-end2end')


def output_names(kind: str, module: nn.Module) -> List[str]:
    names = getattr(module, 'output_names', None)
    if names:
        return list(names)
    return list(SEG_OUTPUTS if kind == 'segmentor' else DET_OUTPUTS)


def dynamic_axes(names: Sequence[str]) -> Dict[str, Dict[int, str]]:
    axes = {'image': {0: 'batch', 2: 'height', 3: 'width'},
            'ori_shape': {0: 'batch'}}
    for name in names:
        if name == 'masks':
            axes[name] = {0: 'batch', 2: 'ori_height', 3: 'ori_width'}
        elif name == 'label_map':
            axes[name] = {0: 'batch', 1: 'ori_height', 2: 'ori_width'}
        else:
            axes[name] = {0: 'batch'}
    return axes


def example_inputs(shape: Sequence[int], batch: int = 1,
                   ori_shape: Optional[Sequence[int]] = None,
                   dtype: str = 'uint8', seed: int = 0):
    """A random ``image`` of ``(batch, 3, H, W)`` and its ``ori_shape``
    (default: the image size)."""
    h, w = int(shape[0]), int(shape[-1])
    g = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (batch, 3, h, w), generator=g,
                          dtype=torch.uint8).to(INPUT_DTYPES[dtype])
    oh, ow = ori_shape or (h, w)
    ori = torch.tensor([[oh, ow]] * batch, dtype=torch.int64)
    return image, ori


#: fp32 tolerance of :func:`verify_end2end` (docs/testing.md), relative to
#: an output's largest magnitude
VERIFY_RTOL = 1e-4
#: Detections / mask or label-map pixels that may differ at fp32 ties (two
#: scores within rounding swap places at the NMS or top-k cut, a pixel's two
#: best classes tie): at most this fraction, and at least one detection
VERIFY_TIE_FRACTION = 0.01
#: Unpaired detections that have an equal-score partner of their label
#: (each side kept another member of a tie) allowed: this fraction
VERIFY_TIED_FRACTION = 0.1


def _max_pairing(candidates: List[List[int]]) -> Dict[int, int]:
    """A maximum matching ``{j: i}`` of the bipartite graph where row ``i``
    may pair with the columns ``candidates[i]`` (Kuhn's augmenting paths).
    A greedy first fit can leave two detections unpaired that a tie let
    pair the other way round."""
    match: Dict[int, int] = {}

    def augment(i, seen):
        for j in candidates[i]:
            if j in seen:
                continue
            seen.add(j)
            if j not in match or augment(match[j], seen):
                match[j] = i
                return True
        return False

    for i in range(len(candidates)):
        augment(i, set())
    return match


def _match_detections(expected: dict, got: dict, tol: dict) -> tuple:
    """Pair the valid detections of one image in both results by label,
    score and box within ``tol`` (order-insensitive: a tie may reorder;
    as many pairs as possible, :func:`_max_pairing`); return ``(pairs,
    tied, unexplained, at_cut)``: counts of unpaired detections that a tie
    may explain, that none does, and of the tied ones those at a full
    side's lowest score (the ``max_per_img`` cut). A tie: an unpaired
    detection of the same label with a score within tolerance (mmcv and
    ONNX Runtime may keep different members of it, e.g. two thin RoIs at
    the border that pool the same pixels), or one at the cut."""
    n_e, n_g = int(expected['num_dets']), int(got['num_dets'])
    candidates = [[j for j in range(n_g)
                   if expected['labels'][i] == got['labels'][j]
                   and abs(expected['scores'][i] - got['scores'][j])
                   <= tol['scores']
                   and np.abs(expected['dets'][i] - got['dets'][j]).max()
                   <= tol['dets']] for i in range(n_e)]
    pairs = sorted((i, j) for j, i in _max_pairing(candidates).items())
    used = {j for _, j in pairs}
    labels = np.concatenate([expected['labels'][:n_e], got['labels'][:n_g]])
    scores = np.concatenate([expected['scores'][:n_e], got['scores'][:n_g]])
    unpaired = ([i for i in range(n_e) if i not in {p[0] for p in pairs}]
                + [n_e + j for j in range(n_g) if j not in used])

    # A side that kept as many detections as it can (max_per_img) cuts
    # through the ties at its lowest score: which of equal scores made it
    # is arbitrary, on each side its own way (confident models saturate
    # many scores at 1.0).
    capacity = expected['scores'].shape[0]
    cut = np.full(len(scores), np.inf, dtype=np.float64)
    if n_e == capacity and n_e:
        cut[:n_e] = scores[n_e - 1]
    if n_g == capacity and n_g:
        cut[n_e:] = scores[n_e + n_g - 1]

    def tied(k):
        same = ((labels == labels[k])
                & (np.abs(scores - scores[k]) <= tol['scores']))
        same[k] = False
        same[[i for i, _ in pairs] + [n_e + j for _, j in pairs]] = False
        return bool(same.any())
    at_cut = [k for k in unpaired if abs(scores[k] - cut[k]) <= tol['scores']]
    ties = sum(tied(k) for k in unpaired if k not in set(at_cut))
    return pairs, ties + len(at_cut), len(unpaired) - ties - len(at_cut), \
        len(at_cut)


def _verify_detections(expected: dict, got: dict, where: str, path: str,
                       image_side: float, sides=('PyTorch', 'ONNX Runtime')):
    # docs/testing.md: score within 1e-4, box within 1e-3 of the image side
    tol = {'scores': 1e-4, 'dets': 1e-3 * image_side}
    batch = expected['dets'].shape[0]
    unmatched, ties, total, mask_bad, mask_px = 0, 0, 0, 0, 0
    at_cut = paired = 0
    for b in range(batch):
        e = {k: v[b] for k, v in expected.items()}
        g = {k: v[b] for k, v in got.items()}
        pairs, tied, missing, cut = _match_detections(e, g, tol)
        unmatched += missing
        ties += tied - cut
        at_cut += cut
        paired += len(pairs)
        total += max(int(e['num_dets']), int(g['num_dets']))
        if 'masks' in e:
            for i, j in pairs:
                mask_bad += int((e['masks'][i] != g['masks'][j]).sum())
                mask_px += e['masks'][i].size
    # one detection more or fewer at the score cut-off (a tie with the
    # threshold) is not a failure, nor a few equal-score ties; a wrong
    # graph that keeps scores (e.g. a wrong rescale) moves many boxes
    if (unmatched > max(1, VERIFY_TIE_FRACTION * total)
            or ties > max(2, VERIFY_TIED_FRACTION * total)):
        raise ExportError(
            f'{path}: {unmatched + ties} detections of {sides[1]} and '
            f'{sides[0]} (of {total} per side) have no twin {where} (same '
            f'label, score within {tol["scores"]:.3g}, box within '
            f'{tol["dets"]:.3g}), {ties} of them with an equal-score '
            f'partner (a tie); an op records a size of the export input as '
            f'a constant or has no faithful ONNX form')
    if at_cut > VERIFY_TIED_FRACTION * total:
        import warnings
        warnings.warn(
            f'{path}: {at_cut} unpaired detections (of {total} per side) '
            f'tie at the max_per_img cut {where} (their scores saturate): '
            f'which of them each side keeps is arbitrary, so only the '
            f'{paired} paired ones were compared')
    if mask_bad > VERIFY_TIE_FRACTION * max(mask_px, 1):
        raise ExportError(f'{path}: {mask_bad} of {mask_px} mask pixels of '
                          f'matching detections differ between {sides[1]} '
                          f'and {sides[0]} {where}')


def compare_outputs(expected: dict, got: dict, path: str, where: str,
                    image_side: float, sides=('PyTorch', 'ONNX Runtime')):
    """Raise :class:`ExportError` when two runs of an end-to-end graph
    (``{output name: array}``) differ by more than fp32 ties explain:
    shapes, label-map pixels one by one, detections paired by label, score
    and box whatever their order (``sides``: the runs' names)."""
    for name in expected:
        if name in ('dets', 'scores', 'labels', 'num_dets'):
            continue  # row counts may differ at a tie: compared below
        e, g = expected[name], got[name]
        if e.shape != g.shape:
            raise ExportError(f'{path}: output {name} has shape {g.shape} in '
                              f'{sides[1]} and {e.shape} in {sides[0]} '
                              f'{where}')
    if 'label_map' in expected:
        e, g = expected['label_map'], got['label_map']
        bad = int((e != g).sum())
        if bad > VERIFY_TIE_FRACTION * e.size:
            raise ExportError(f'{path}: label_map differs between {sides[1]} '
                              f'and {sides[0]} in {bad} of {e.size} pixels '
                              f'{where}')
    if 'dets' in expected:
        _verify_detections(expected, got, where, path, image_side, sides)


def verify_end2end(module: nn.Module, path: str, names: Sequence[str],
                   image: torch.Tensor, ori_shape: torch.Tensor) -> None:
    """Run the file in ONNX Runtime and ``module`` in PyTorch on the same
    inputs; raise :class:`ExportError` when the shapes differ or more than
    ties can explain does (:func:`compare_outputs`)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(path, options,
                                   providers=['CPUExecutionProvider'])
    with torch.no_grad():
        outputs = module(image, ori_shape)
    if isinstance(outputs, torch.Tensor):
        outputs = (outputs, )
    expected = dict(zip(names, (t.cpu().numpy() for t in outputs)))
    got = dict(zip(names, session.run(None, {'image': image.numpy(),
                                             'ori_shape': ori_shape.numpy()})))
    where = f'at input {tuple(image.shape)}, ori_shape {ori_shape[0].tolist()}'
    compare_outputs(expected, got, path, where, float(ori_shape.max()))


def export_end2end(model: nn.Module, out: str,
                   shape: Sequence[int] = (800, 1333),
                   input_dtype: str = 'uint8', opset: int = DEFAULT_OPSET,
                   checkpoint: Optional[str] = None,
                   verify: bool = True) -> Dict[str, str]:
    """Export ``model`` (from :func:`pvt_mm.deploy.load_model`) end to end
    to ``out``, traced at an image of ``shape`` = (H, W); return the
    metadata written into the file.

    With ``verify``, ONNX Runtime runs the file once at another size and
    batch (H + 32, W + 64, batch 2, original size 1.5x) against the PyTorch
    module (:func:`verify_end2end`)."""
    import onnx  # noqa: F401 (missing: fail before the long trace)

    if input_dtype not in INPUT_DTYPES:
        raise ExportError(f'input_dtype={input_dtype!r}: choose one of '
                          f'{sorted(INPUT_DTYPES)}')
    kind = graph_kind(model)
    h, w = int(shape[0]), int(shape[-1])
    min_size = min_input_size(model)
    check_input_size((h, w), min_size, type(model).__name__)
    resize = pipeline_resize(model.cfg)
    model.eval()
    module = build_end2end(model).eval()
    names = output_names(kind, module)
    image, ori = example_inputs((h, w), dtype=input_dtype,
                                ori_shape=(h * 3 // 2, w * 3 // 2))
    trace_to_onnx(model, module, (image, ori), out, INPUTS, names,
                  dynamic_axes(names), opset)
    meta = common_metadata(model, kind, min_size, (h, w), checkpoint,
                           model_fingerprint(model.cfg, end2end=True))
    meta.update({
        'end2end': '1',
        'outputs': json.dumps(names),
        'input': json.dumps({
            'dtype': input_dtype, 'channel_order': 'bgr', 'resize': resize,
            'min_size': min_size,
            'size_divisor': Preprocess.from_model(model).size_divisor}),
    })
    write_metadata(out, meta)
    if verify:
        image, ori = example_inputs((h + 32, w + 64), batch=2,
                                    dtype=input_dtype, seed=1,
                                    ori_shape=((h + 32) * 3 // 2,
                                               (w + 64) * 3 // 2))
        verify_end2end(module, out, names, image, ori)
    return meta


__all__ = ['compare_outputs', 'export_end2end', 'pipeline_resize',
           'verify_end2end',
           'example_inputs', 'INPUT_DTYPES']
