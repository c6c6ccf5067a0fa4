"""Every family through the reference path and the fast paths of
:mod:`pvt_mm.execution`: the same outputs and the same gradients.

The fast paths compute the same expressions in another order (bands of
rows, query groups as extra batch entries, sums accumulated band by band),
so results may differ by float rounding only. The tolerance follows from
fp32 arithmetic: a sum of ``n`` terms computed in two orders differs by at
most about ``n * u * sum(|terms|)`` (u = 2**-24, the unit roundoff), which
the test bounds by ``n * u * scale`` with ``n`` the longest reduction a
fast path reorders (all tokens of a stage, for a weight gradient) and
``scale`` the largest magnitude of the compared tensors. It does not depend
on the CPU's vector width (AVX-512, AVX2 or SSE), which only changes the
order within the same bound; a wrong halo row or a lost gradient term is
off by orders of magnitude more.
"""
import os
import subprocess
import sys

import pytest
import torch

from helpers import TWO_STAGE_CVT, TWO_STAGE_V2, tiny_models
from pvt_mm import PVTv1
from pvt_mm.execution import (ExecutionPolicy, execution_policy, get_policy,
                              set_policy)
from pvt_mm.execution import ffn as ffn_mod
from pvt_mm.execution import sdpa

UNIT_ROUNDOFF = 2.0 ** -24
IMAGE = (2, 3, 72, 88)  # stage-1 map 18x22: bands of 5 rows leave a partial one

#: Fast settings that make every strategy run on tiny maps: FFN bands of 5
#: rows (or tokens) in inference and training; the default policy otherwise.
TINY_BANDS = dict(ffn_band_bytes=1, ffn_min_band=5, ffn_train_band_min_bytes=0)


def families():
    models = tiny_models()
    models['pvtv1_cls'] = PVTv1(arch=TWO_STAGE_V2, drop_path_rate=0.,
                                pretrain_img_size=64, with_cls_token=True,
                                out_type='cls_token')
    return models


def run(model, x, train: bool):
    """Outputs, and in training the gradients of every parameter and of
    the input for a fixed, non-uniform loss."""
    model.train(train)
    model.zero_grad()
    x = x.clone().requires_grad_(train)
    with torch.set_grad_enabled(train):
        out = model(x)
    outputs = [o.detach().clone() for o in out]
    if not train:
        return outputs, []
    weights = [torch.linspace(-1, 1, o.numel()).view_as(o) for o in out]
    sum((o * w).sum() for o, w in zip(out, weights)).backward()
    grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    return outputs, grads + [x.grad.clone()]


def assert_fp32_equal(expected, got, terms: int):
    """Equal up to reordering ``terms``-term fp32 sums (see module doc)."""
    assert len(expected) == len(got)
    if not expected:
        return
    scale = max(t.abs().max().item() for t in expected)
    bound = terms * UNIT_ROUNDOFF * scale
    for i, (a, b) in enumerate(zip(expected, got)):
        assert a.shape == b.shape and a.dtype == b.dtype
        err = (a - b).abs().max().item()
        assert err <= bound, f'tensor {i}: off by {err:.3g} > {bound:.3g}'


@pytest.fixture
def counted(monkeypatch):
    """Counts the fast strategies that ran (so no comparison is vacuous)."""
    calls = dict(bands=0, band_backward=0, recompute=0, split=0)

    def count(module, name, key):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            calls[key] += 1
            return real(*args, **kwargs)
        monkeypatch.setattr(module, name, wrapper)
    count(ffn_mod, 'forward_bands', 'bands')
    count(ffn_mod, 'backward_bands', 'band_backward')
    count(ffn_mod, 'forward_recompute', 'recompute')
    real_splits = sdpa.query_splits

    def query_splits(q):
        splits = real_splits(q)
        calls['split'] += splits > 1
        return splits
    monkeypatch.setattr(sdpa, 'query_splits', query_splits)
    # four threads' worth of query groups, whatever the machine has
    monkeypatch.setattr(torch, 'get_num_threads', lambda: 4)
    return calls


@pytest.mark.parametrize('train', [False, True], ids=['inference', 'training'])
@pytest.mark.parametrize('settings', ['default', 'tiny_bands'])
@pytest.mark.parametrize('name', ['pvtv1', 'pvtv1_cls', 'pvtv2', 'pvtv2_li',
                                  'cvt_cls'])
def test_fast_path_equals_reference(name, settings, train, counted):
    model = families()[name]
    x = torch.randn(*IMAGE)
    with execution_policy('reference'):
        ref_out, ref_grads = run(model, x, train)
    assert not any(counted.values()), f'reference path ran {counted}'
    changes = TINY_BANDS if settings == 'tiny_bands' else {}
    with execution_policy('fast', **changes):
        out, grads = run(model, x, train)
    if settings == 'tiny_bands':
        assert counted['bands'], 'the banded FFN did not run'
        assert counted['band_backward'] or not train
    elif train:
        assert counted['recompute'], 'the FFN recompute did not run'
    if train:
        assert counted['split'], 'attention queries were not split'
    stage1_tokens = IMAGE[0] * (IMAGE[2] // 4) * (IMAGE[3] // 4)
    assert_fp32_equal(ref_out, out, terms=stage1_tokens)
    assert_fp32_equal(ref_grads, grads, terms=stage1_tokens)


def test_policy_switches_and_environment():
    assert get_policy() == ExecutionPolicy.fast()
    with execution_policy('reference') as policy:
        assert policy == ExecutionPolicy.reference() and not policy.inplace
        with execution_policy(ffn_min_band=3):
            assert get_policy().ffn_min_band == 3 and not get_policy().inplace
    assert get_policy() == ExecutionPolicy.fast()
    previous = set_policy('reference')
    try:
        assert get_policy() == ExecutionPolicy.reference()
    finally:
        set_policy(previous)
    with pytest.raises(ValueError, match='PVT_MM_EXECUTION'):
        execution_policy('fastest').__enter__()
    code = ('from pvt_mm.execution import get_policy, ExecutionPolicy; '
            'print(get_policy() == ExecutionPolicy.reference())')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, check=True,
                         env={**os.environ, 'PVT_MM_EXECUTION': 'reference'})
    assert out.stdout.strip() == 'True'


@pytest.mark.parametrize('name', ['pvtv2', 'cvt_cls'])
def test_fused_drop_path_equals_reference(name, monkeypatch):
    """Stochastic depth on (rate 0.5): under the same seed both paths draw
    the same per-sample masks, and the fused residual (one ``addcmul``)
    gives the reference's outputs and gradients."""
    from pvt_mm import CvT, PVTv2
    from pvt_mm.execution import ops
    calls = []
    real_addcmul = torch.addcmul
    monkeypatch.setattr(ops.torch, 'addcmul',
                        lambda *a, **k: calls.append(1) or real_addcmul(*a, **k))
    model = (PVTv2(arch=TWO_STAGE_V2, drop_path_rate=0.5) if name == 'pvtv2'
             else CvT(arch=TWO_STAGE_CVT, with_cls_token=True,
                      drop_path_rate=0.5))
    x = torch.randn(4, 3, 64, 64)
    results = {}
    for policy in ('reference', 'fast'):
        torch.manual_seed(3)
        with execution_policy(policy):
            results[policy] = run(model, x, train=True)
        assert bool(calls) == (policy == 'fast')
    assert_fp32_equal(results['reference'][0], results['fast'][0], terms=64)
    assert_fp32_equal(results['reference'][1], results['fast'][1], terms=64)
    # not vacuous: another seed drops other samples
    torch.manual_seed(4)
    with execution_policy('fast'):
        other, _ = run(model, x, train=True)
    assert not all(torch.equal(a, b)
                   for a, b in zip(results['fast'][0], other))
