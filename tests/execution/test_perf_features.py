"""Speed and memory features of pvt_mm.execution.

The fast paths (banded CPU execution of the FFN in inference and
training, in-place residual sums, the FFN's recompute-in-backward, query
splitting for the attention backward) must give the results of the plain
computation; the backbones must compile without graph breaks and run under
bf16 autocast. The analysis tools' tests are in
tests/tools/test_analysis_tools.py.
"""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from helpers import TWO_STAGE_V2, scaled_mismatches, tiny_models
from pvt_mm import PVTv2
from pvt_mm.execution import (add_residual, attention, execution_policy,
                              get_policy)
from pvt_mm.execution import ffn as ffn_mod
from pvt_mm.execution import sdpa
from pvt_mm.models import layers


def max_diff(a, b):
    return max((x - y).abs().max().item() for x, y in zip(a, b))


# ------------------------------------------------------- banded inference

@pytest.mark.parametrize('name', ['pvtv2', 'pvtv2_li', 'pvtv1', 'cvt_cls'])
def test_banded_ffn_matches_whole_map(name, monkeypatch):
    model = tiny_models()[name].eval()
    x = torch.randn(2, 3, 72, 88)  # 18x22 stage-1 map: last band is partial
    with torch.no_grad():
        with execution_policy(ffn_band_bytes=1 << 40):
            whole = model(x)
        calls = []
        original = ffn_mod.forward_bands
        monkeypatch.setattr(ffn_mod, 'forward_bands',
                            lambda *a, size: calls.append(size) or original(*a, size=size))
        with execution_policy(ffn_band_bytes=1, ffn_min_band=5):
            banded = model(x)
    assert calls and set(calls) == {5}, 'the banded path did not run'
    assert max_diff(whole, banded) < 1e-5


def test_band_size_rules():
    ffn = layers.ConvFFN(8, 32)
    x = torch.randn(1, 64 * 64, 8)
    big = torch.randn(1, 512 * 512, 8)  # hidden map: 32 MiB
    policy = get_policy()
    band_size = ffn_mod.band_size
    with torch.no_grad():
        assert band_size(ffn, x, (64, 64)) == 0  # small map: one pass
        rows = band_size(ffn, big, (512, 512))
        assert policy.ffn_min_band <= rows < 512
        assert rows * 512 * 32 * 4 <= max(policy.ffn_band_bytes,
                                          policy.ffn_min_band * 512 * 32 * 4)
    # training: only maps that would be mapped fresh from the kernel
    assert band_size(ffn, x, (64, 64), grad=True) == 0
    assert band_size(ffn, big, (512, 512), grad=True) == rows
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert band_size(ffn, big, (512, 512), grad=True) == 0
    ffn.drop.p = 0.1  # dropout would need its random masks replayed
    assert band_size(ffn, big, (512, 512), grad=True) == 0
    assert band_size(ffn.eval(), big, (512, 512), grad=True) == rows
    with execution_policy('reference'):
        assert band_size(ffn, big, (512, 512)) == 0


class CopyRecorder(TorchDispatchMode):
    """Records the shapes of every copying op's output."""
    COPIES = ('aten.copy_', 'aten.clone', 'aten._to_copy', 'aten.cat',
              'aten.contiguous', 'aten.empty_like')

    def __init__(self):
        super().__init__()
        self.copies, self.largest = [], {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = str(func.overloadpacket)
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                if name in self.COPIES:
                    self.copies.append((name, t.numel()))
                self.largest[name] = max(self.largest.get(name, 0), t.numel())
        return out


def test_inference_makes_no_full_size_copies_or_hidden_maps():
    """Tokens stay channels-last: no op copies a whole token map (NCHW <->
    token transposes, non-contiguous q/k/v or LayerNorm inputs, merging
    heads), and banded CPU inference never materialises the whole hidden
    map of the FFN."""
    model = PVTv2(arch='b0').eval()
    x = torch.randn(1, 3, 512, 512)
    tokens = 128 * 128 * 32          # stage-1 token map
    hidden = 128 * 128 * 32 * 8      # stage-1 FFN hidden map
    rec = CopyRecorder()
    with torch.no_grad(), rec:
        outs = model(x)
    # the only full-size copies allowed are the image's conversion to
    # channels-last (3 channels: cheaper than converting the conv output)
    # and the one copy of each returned map to contiguous NCHW
    allowed = {x.numel()} | {o.numel() for o in outs}
    big_copies = [c for c in rec.copies if c[1] >= tokens // 2]
    assert all(n in allowed for _, n in big_copies), big_copies
    assert len(big_copies) <= 1 + len(outs)
    assert sum(n == outs[0].numel() for _, n in big_copies) == 1
    assert max(rec.largest.values()) < hidden // 2


def test_residual_sum_is_in_place_and_exact():
    x = torch.randn(4, 5, 8)
    branch = torch.randn(4, 5, 8)
    expected = x + branch
    out = add_residual(x, branch)
    assert out.data_ptr() == branch.data_ptr()
    assert torch.equal(out, expected)
    low = torch.randn(4, 5, 8).bfloat16()  # bf16 branch under autocast
    out = add_residual(x, low)
    assert out.dtype == torch.float32 and torch.equal(out, x + low)
    # a branch autograd records as a view: summed out of place (in place,
    # backward would copy the whole base and clone it)
    view = (torch.randn(20, 8, requires_grad=True) * 1.).view(4, 5, 8)
    out = add_residual(x, view)
    assert out.data_ptr() != view.data_ptr() and torch.equal(out, x + view)


# ------------------------------------------------- training memory / grads

@pytest.mark.parametrize('name', ['pvtv2', 'pvtv1', 'cvt_cls'])
def test_ffn_recompute_gives_identical_gradients(name, monkeypatch):
    model = tiny_models()[name].train()
    x = torch.randn(2, 3, 64, 64)

    def grads():
        model.zero_grad()
        torch.manual_seed(1)
        sum(o.square().mean() for o in model(x)).backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    used = []
    real = ffn_mod.forward_recompute
    monkeypatch.setattr(ffn_mod, 'forward_recompute',
                        lambda *a: used.append(1) or real(*a))
    recomputed = grads()
    assert used, 'the FFN was not checkpointed in training'
    with execution_policy(recompute_ffn=False):
        stored = grads()
    assert len(recomputed) == len(stored)
    assert all(torch.equal(a, b) for a, b in zip(recomputed, stored))


@pytest.fixture
def tiny_bands(monkeypatch):
    """Band every FFN, training included, in bands of 5 rows (or tokens)."""
    calls = []
    backward = ffn_mod.backward_bands
    monkeypatch.setattr(ffn_mod, 'backward_bands',
                        lambda *a: calls.append(a[4]) or backward(*a))
    with execution_policy(ffn_train_band_min_bytes=0, ffn_band_bytes=1,
                          ffn_min_band=5):
        yield calls


def assert_grads_close(expected, got):
    """Equal to float rounding: relative to each tensor's largest entry, and
    absolutely to the largest gradient of all (some gradients are zero in
    exact arithmetic, e.g. of a key bias, and only rounding noise here)."""
    assert len(expected) == len(got)
    assert [a is None for a in expected] == [b is None for b in got]
    present = [i for i, a in enumerate(expected) if a is not None]
    bad = scaled_mismatches({i: expected[i] for i in present},
                            {i: got[i] for i in present}, 1e-4, 1e-6)
    assert not bad, bad


@pytest.mark.parametrize('name', ['pvtv2', 'pvtv2_li', 'pvtv1', 'cvt_cls',
                                  'pvtv2_cp'])
def test_banded_ffn_training_matches_whole_map(name, tiny_bands, monkeypatch):
    """CPU training with banded FFNs (forward in bands, backward recomputing
    each band): the outputs and every gradient of the whole-map path."""
    model = tiny_models()[name.replace('_cp', '')].train()
    if name.endswith('_cp'):
        for stage in model.stages:
            stage.with_cp = True
    x = torch.randn(2, 3, 72, 88, requires_grad=True)  # partial last band

    def run():
        model.zero_grad()
        x.grad = None
        out = model(x)
        weights = [torch.linspace(-1, 1, o.numel()).view_as(o) for o in out]
        sum((o * w).sum() for o, w in zip(out, weights)).backward()
        return ([o.detach() for o in out],
                [p.grad.clone() for p in model.parameters()] + [x.grad.clone()])

    banded_out, banded_grads = run()
    assert tiny_bands and set(tiny_bands) == {5}, 'banded backward did not run'
    tiny_bands.clear()
    with execution_policy(ffn_train_band_min_bytes=1 << 40):
        whole_out, whole_grads = run()
    assert not tiny_bands
    assert max_diff(whole_out, banded_out) < 1e-5
    assert_grads_close(whole_grads, banded_grads)


@pytest.mark.parametrize('frozen', ['fc1', 'fc2', 'input'])
def test_banded_ffn_training_with_frozen_parts(frozen, tiny_bands):
    """Frozen parameters get no gradient and an input without grad gets
    none either; everything else matches autograd through the plain FFN."""
    torch.manual_seed(0)
    ffn = layers.ConvFFN(8, 32, extra_relu=True)
    if frozen != 'input':
        getattr(ffn, frozen).requires_grad_(False)
    x = torch.randn(2, 13 * 11, 8, requires_grad=frozen != 'input')
    grad = torch.randn(2, 13 * 11, 8)
    banded = ffn(x, (13, 11))
    banded.backward(grad)
    assert tiny_bands, 'banded backward did not run'
    got = [p.grad for p in ffn.parameters()] + [x.grad]
    for p in ffn.parameters():
        p.grad = None
    x.grad = None
    with execution_policy('reference'):
        reference = ffn(x, (13, 11))  # plain autograd
    reference.backward(grad)
    expected = [p.grad for p in ffn.parameters()] + [x.grad]
    assert torch.allclose(banded, reference, atol=1e-6)
    assert_grads_close(expected, got)
    frozen_grads = [p.grad for p in getattr(ffn, frozen).parameters()] \
        if frozen != 'input' else [x.grad]
    assert all(g is None for g in frozen_grads)


def test_banded_ffn_training_saves_no_hidden_map(tiny_bands):
    """A banded FFN keeps only its input for backward: no saved tensor is
    as large as the hidden map, and the grad of a second training step
    (after an optimizer step changed the weights) is still checked."""
    ffn = layers.ConvFFN(8, 64)
    x = torch.randn(1, 40 * 40, 8, requires_grad=True)
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = ffn(x, (40, 40))
    assert max(saved) == x.numel()  # the input; params are smaller
    out = ffn(x, (40, 40))
    with torch.no_grad():
        ffn.fc1.weight.add_(1.)     # modified in place before backward
    with pytest.raises(RuntimeError, match='modified by an inplace'):
        out.sum().backward()


def test_ffn_recompute_stores_less():
    """Saved activations of one training forward: the FFN keeps fc1's
    output only, so far less than when every intermediate is saved."""
    model = PVTv2(arch=TWO_STAGE_V2, drop_path_rate=0.).train()
    x = torch.randn(1, 3, 128, 128)

    def saved_bytes():
        total = []

        def pack(t):
            total.append(t.numel() * t.element_size())
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(x)
        return sum(total)

    with_recompute = saved_bytes()
    with execution_policy(recompute_ffn=False):
        without = saved_bytes()
    assert with_recompute < 0.75 * without


def test_attention_splits_queries_for_parallel_backward(monkeypatch):
    """Training on CPU with one (batch, head) pair: queries are split so the
    flash-attention backward can use every thread; same values and grads."""
    monkeypatch.setattr(torch, 'get_num_threads', lambda: 4)
    q = torch.randn(1, 4096, 1, 32).transpose(1, 2).requires_grad_()
    k = torch.randn(1, 1, 64, 32, requires_grad=True)
    v = torch.randn(1, 1, 64, 32, requires_grad=True)
    assert sdpa.query_splits(q) == 4
    with torch.no_grad():
        assert sdpa.query_splits(q) == 1  # inference: forward is parallel
    with execution_policy(cpu_split_queries=False):
        assert sdpa.query_splits(q) == 1
    out = attention(q, k, v, scale=0.3)
    grad = torch.randn_like(out)
    out.backward(grad)
    split_grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=0.3)
    ref.backward(grad)
    assert torch.allclose(out, ref, atol=1e-6)
    for a, t in zip(split_grads, (q, k, v)):
        assert torch.allclose(a, t.grad, atol=1e-5)
    assert layers._merge_heads(out).is_contiguous()  # still a view


# ------------------------------------------------------ compile / autocast

@pytest.mark.parametrize('train', [False, True])
def test_compiles_without_graph_breaks(train):
    for name, model in tiny_models().items():
        model.train(train)
        x = torch.randn(1, 3, 64, 64)
        compiled = torch.compile(model, backend='eager', fullgraph=True)
        with torch.set_grad_enabled(train):
            torch.manual_seed(0)
            expected = model(x)
            torch.manual_seed(0)
            out = compiled(x)
        assert max_diff(expected, out) < 1e-6, name
        if train:
            sum(o.mean() for o in out).backward()
        torch._dynamo.reset()


def test_compiled_model_is_not_recompiled_for_the_same_size():
    """A compiled backbone runs its graph again on the next call of the
    same size, also after eager calls of other sizes (the input check's
    cache of sizes once guarded the graph: every call recompiled)."""
    for name, model in tiny_models().items():
        model.eval()
        compiled = torch.compile(model, backend='eager', fullgraph=True)
        x = torch.randn(1, 3, 64, 64)
        with torch.no_grad(), torch._dynamo.config.patch(
                error_on_recompile=True):
            compiled(x)
            compiled(x)
            model(torch.randn(1, 3, 96, 96))  # eager, a new size
            compiled(x)
        torch._dynamo.reset()


@pytest.mark.parametrize('name', ['pvtv2', 'pvtv2_li', 'pvtv1', 'cvt_cls'])
def test_bf16_autocast_is_finite_and_close(name):
    model = tiny_models()[name].eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = model(x)
    for r, o in zip(ref, low):
        assert torch.isfinite(o).all()
        rel = (o.float() - r).norm() / r.norm()
        assert rel < 0.05, f'{name}: relative error {rel:.3f}'


# ------------------------------------------------ execution per device
@pytest.mark.parametrize('policy,switch,device,expected', [
    (None, None, 'cpu', True),     # device default: free on CPU
    (None, None, 'cuda', False),   # costs launches on a GPU: asked for
    (None, True, 'cuda', True),    # the backbone's recompute_ffn=True
    (None, False, 'cpu', False),
    (False, True, 'cpu', False),   # 'reference' wins over the switch
    (True, False, 'cuda', True),
])
def test_ffn_recompute_is_chosen_per_device(policy, switch, device, expected):
    from pvt_mm.execution import ExecutionPolicy, recomputes_ffn
    chosen = recomputes_ffn(ExecutionPolicy(recompute_ffn=policy), switch,
                            device)
    assert chosen is expected
    assert ExecutionPolicy.fast().recompute_ffn is None
    assert ExecutionPolicy.reference().recompute_ffn is False


def test_backbone_recompute_ffn_switch_reaches_the_strategy():
    """``recompute_ffn`` next to ``with_cp``: every FFN gets it, and on a
    non-CPU device (``meta`` here) the training FFN recomputes only when
    asked; on CPU the default does."""
    from pvt_mm.execution.ffn import ffn_strategy, forward_recompute
    x = torch.randn(2, 16, 16, requires_grad=True)
    for switch, on_cpu, elsewhere in ((None, True, False), (True, True, True),
                                      (False, False, False)):
        model = PVTv2(arch=TWO_STAGE_V2, drop_path_rate=0.,
                      recompute_ffn=switch)
        ffns = [m for m in model.modules() if isinstance(m, layers.Mlp)]
        assert ffns and all(f.recompute is switch for f in ffns)
        ffn = ffns[0].train()
        for device, expected in (('cpu', on_cpu), ('meta', elsewhere)):
            strategy = ffn_strategy(ffn, x.to(device), (4, 4))
            assert (strategy is forward_recompute) is expected, (
                switch, device)
    with pytest.raises(ValueError, match='recompute_ffn must be None'):
        PVTv2(arch=TWO_STAGE_V2, recompute_ffn='yes')
