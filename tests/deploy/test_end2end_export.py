"""The end-to-end exporter's own ONNX Runtime check (``verify_end2end``):
it passes what fp32 ties explain (two near-equal detections swapping
places, one detection more or fewer at a cut) and refuses real
differences."""
import numpy as np
import pytest

from pvt_mm.deploy.end2end.export import _verify_detections, pipeline_resize
from pvt_mm.deploy.onnx_export import ExportError


def detections(n=6, k=10, seed=0, masks=False):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 100, (1, k, 2))
    out = {
        'dets': np.concatenate([xy, xy + rng.uniform(5, 50, (1, k, 2))],
                               -1).astype(np.float32),
        'scores': np.sort(rng.uniform(0.1, 1, (1, k)))[:, ::-1].astype(
            np.float32).copy(),
        'labels': rng.integers(0, 3, (1, k)),
        'num_dets': np.array([n]),
    }
    if masks:
        out['masks'] = rng.integers(0, 2, (1, k, 20, 30)).astype(np.uint8)
    for key in ('dets', 'scores'):
        out[key][:, n:] = 0
    out['labels'][:, n:] = -1
    return out


def swap(d, i, j):
    d = {k: v.copy() for k, v in d.items()}
    for k in ('dets', 'scores', 'labels', 'masks'):
        if k in d:
            d[k][0, [i, j]] = d[k][0, [j, i]]
    return d


def test_ties_pass():
    e = detections(masks=True)
    _verify_detections(e, {k: v.copy() for k, v in e.items()}, '', 'f', 100)
    # two detections in the other order (a score tie)
    _verify_detections(e, swap(e, 2, 3), '', 'f', 100)
    # one more detection at the cut
    g = {k: v.copy() for k, v in e.items()}
    g['num_dets'] = g['num_dets'] + 1
    _verify_detections(e, g, '', 'f', 100)
    # two detections of equal score where each side kept another member
    # (thin RoIs at the border pool the same pixels)
    e2 = {k: v.copy() for k, v in e.items()}
    e2['scores'][0, 3] = e2['scores'][0, 2]
    e2['labels'][0, 3] = e2['labels'][0, 2]
    g2 = {k: v.copy() for k, v in e2.items()}
    g2['dets'][0, 2] += 20.
    _verify_detections(e2, g2, '', 'f', 100)


def test_differences_fail():
    e = detections(masks=True)
    # every box moved, scores kept (e.g. a wrong rescale): not ties
    moved = {k: v.copy() for k, v in e.items()}
    moved['dets'] *= 1.05
    with pytest.raises(ExportError, match='12 detections .*of 6 per side.*12 of '
                       'them with an equal-score partner'):
        _verify_detections(e, moved, '', 'f', 100)
    # one box moved and one score changed: not a tie
    moved = {k: v.copy() for k, v in e.items()}
    moved['dets'][0, 1] += 3.
    moved['scores'][0, 1] -= 0.01
    with pytest.raises(ExportError, match='2 detections .*of 6 per side.*0 of them'):
        _verify_detections(e, moved, '', 'f', 100)
    relabelled = {k: v.copy() for k, v in e.items()}
    relabelled['labels'][0, 0] = (relabelled['labels'][0, 0] + 1) % 3
    with pytest.raises(ExportError, match='have no twin'):
        _verify_detections(e, relabelled, '', 'f', 100)
    # a mask of a matching detection
    masked = {k: v.copy() for k, v in e.items()}
    masked['masks'][0, 0] = 1 - masked['masks'][0, 0]
    with pytest.raises(ExportError, match='mask pixels'):
        _verify_detections(e, masked, '', 'f', 100)


def test_pairing_is_maximal_whatever_the_order():
    """Near-equal boxes of one label and score (confident scores saturate
    at 1.0): a first-fit pairing gives the first detection the partner the
    second one needed, and both stay unpaired; the pairing is a maximum
    matching instead. A box really moved stays unpaired (control)."""
    from pvt_mm.deploy.end2end.export import _match_detections
    tol = {'scores': 1e-4, 'dets': 1.0}

    def dets(*boxes):
        n = len(boxes)
        return dict(num_dets=n, labels=np.zeros(n, np.int64),
                    scores=np.ones(n, np.float32),
                    dets=np.array(boxes, np.float32))
    expected = dets([0, 0, 10, 10], [1.5, 0, 11.5, 10])
    got = dets([0.8, 0, 10.8, 10], [-0.5, 0, 9.5, 10])
    # first fit: expected 0 takes got 0, and expected 1 fits only got 0
    pairs, tied, unexplained, _ = _match_detections(expected, got, tol)
    assert pairs == [(0, 1), (1, 0)] and (tied, unexplained) == (0, 0)
    got['dets'][1] += 5.
    pairs, tied, unexplained, _ = _match_detections(expected, got, tol)
    assert len(pairs) == 1 and tied + unexplained == 2


def test_ties_at_a_full_cut(recwarn):
    """A confident model saturates scores: when both sides keep
    max_per_img detections and the last ones share the lowest kept score,
    each side keeps its own members of that tie. They pass (with a warning
    that says how many were compared); boxes above the cut that move
    still fail (more than the two swaps the tie budget allows)."""
    e = detections(n=10, k=10)
    e['scores'][0, 4:] = 0.5  # six tie at the cut (10 of 10 kept)
    e['labels'][0, 4:] = 1
    g = {k: v.copy() for k, v in e.items()}
    g['dets'][0, 4:] += 30.  # other members of the tie
    _verify_detections(e, g, '', 'f', 100)
    assert 'tie at the max_per_img cut' in str(recwarn.pop().message)
    g['dets'][0, :3] += 5.  # above the cut: a real difference
    with pytest.raises(ExportError, match='have no twin'):
        _verify_detections(e, g, '', 'f', 100)


def pipeline_config(*steps):
    from mmengine.config import Config
    return Config(dict(test_dataloader=dict(dataset=dict(
        pipeline=[dict(type='LoadImageFromFile'), *steps,
                  dict(type='PackDetInputs')]))))


def test_pipeline_resize():
    resize = dict(type='Resize', scale=(1333, 800), keep_ratio=True)
    assert pipeline_resize(pipeline_config(resize)) == {
        'scale': [1333, 800], 'keep_ratio': True}
    # a step the runtime would not repeat is refused, not skipped
    with pytest.raises(ExportError, match=r"\['Pad'\].*--no-end2end"):
        pipeline_resize(pipeline_config(
            resize, dict(type='Pad', size_divisor=64)))
    with pytest.raises(ExportError, match='no single Resize'):
        pipeline_resize(pipeline_config())
