"""How many operators a PVTv2-B2 training step dispatches: pvt_mm against
timm's ``pvt_v2_b2`` and mmdet's ``PyramidVisionTransformerV2``.

On a GPU a training step at classification size is bound by operator
launches, not arithmetic, so pvt_mm must not dispatch more compute
operators than the leaner of the two (issue 20). The count is
device-independent; it is taken on CPU with benchmarks/harness's
:func:`harness.ops.training_step_ops` (forward and backward; views,
allocations and ``_unsafe_view`` are not compute operators, see
:func:`harness.ops.is_compute_op`). All three run the same step:
drop-path rate 0.1, batch 2, ``train()``, loss = sum of the four stage
outputs' means. The counts do not depend on the image size here (no
size-dependent strategy applies at these sizes: 2x3x64x64 and 2x3x224x224
give the same numbers, docs/benchmarks.md), so the test runs at 64x64
(``PVT_MM_OP_COUNT_SIZE=224`` for another size). pvt_mm is counted under
both policies; ``fast`` as a GPU runs it (the CPU-only strategies, FFN bands
and query groups, are off, and so is the FFN recompute, which the
per-device default leaves off on CUDA). The table is printed (``-s``) and
recorded in docs/benchmarks.md, "Operator counts".
"""
import os

import pytest
import torch

from pvt_mm import PVTv2
from harness.ops import training_step_ops
from pvt_mm.execution import ExecutionPolicy, execution_policy, recomputes_ffn
from pvt_mm.models import layers

IMAGE = (2, 3) + (int(os.environ.get('PVT_MM_OP_COUNT_SIZE', 64)), ) * 2
DROP_PATH = 0.1
#: ``fast`` as CUDA runs it: no CPU-only strategy, and the FFN recompute as
#: the per-device default has it there (off: RECOMPUTE_FFN_BY_DEVICE).
GPU_FAST = dict(cpu_banded_ffn=False, cpu_split_queries=False,
                recompute_ffn=recomputes_ffn(ExecutionPolicy.fast(), None,
                                             'cuda'))


def _pvt_mm():
    return PVTv2(arch='b2', drop_path_rate=DROP_PATH)


def _timm():
    timm = pytest.importorskip('timm')
    return timm.create_model('pvt_v2_b2', features_only=True,
                             drop_path_rate=DROP_PATH)


def _mmdet():
    backbones = pytest.importorskip('mmdet.models.backbones')
    return backbones.PyramidVisionTransformerV2(
        embed_dims=64, num_layers=[3, 4, 6, 3], drop_path_rate=DROP_PATH)


def count(build, policy: str = 'fast', edit=None, **changes) -> int:
    """Compute operators of one training step of ``build()`` (``edit``
    changes the built model first) under ``policy`` with ``changes``."""
    torch.manual_seed(0)
    model = build()
    if edit is not None:
        edit(model)
    x = torch.randn(IMAGE)
    with execution_policy(policy, **changes):
        return len(training_step_ops(model, x).compute_ops())


@pytest.fixture(scope='module')
def counts():
    return {'pvt_mm reference': count(_pvt_mm, 'reference'),
            'pvt_mm fast': count(_pvt_mm, 'fast', **GPU_FAST),
            'timm pvt_v2_b2': count(_timm),
            'mmdet PyramidVisionTransformerV2': count(_mmdet)}


def test_pvt_mm_dispatches_no_more_operators_than_its_peers(counts):
    print(f'\ncompute operators, PVTv2-B2 training step, {IMAGE}, '
          f'drop path {DROP_PATH}:')
    for name, n in counts.items():
        print(f'  {name:34s} {n}')
    fewest = min(n for name, n in counts.items() if not name.startswith('pvt_mm'))
    assert counts['pvt_mm reference'] <= fewest, counts
    assert counts['pvt_mm fast'] <= fewest, counts


def test_negative_control_mmcv_drop_path_costs_more(counts):
    """mmcv's ``DropPath`` (what pvt_mm used before: 8 operators per
    residual, its sum and backward included, where the fused one needs 4)
    swapped into every block: the same guard fails."""
    from mmcv.cnn.bricks import DropPath as MMCVDropPath

    def swap(model):
        for block in model.modules():
            if isinstance(block, layers.Block) and isinstance(
                    block.drop_path, layers.DropPath):
                block.drop_path = MMCVDropPath(block.drop_path.drop_prob)

    swapped = count(_pvt_mm, 'fast', edit=swap, **GPU_FAST)
    fewest = min(counts['timm pvt_v2_b2'],
                 counts['mmdet PyramidVisionTransformerV2'])
    assert swapped > fewest >= counts['pvt_mm fast'], (swapped, counts)
