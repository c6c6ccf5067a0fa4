"""pvt_mm.FP32FocalLoss: MMDetection's FocalLoss computed in fp32, so bf16
autocast training never hands mmcv's focal-loss CUDA kernel (which has no
bf16) a bf16 tensor. The CUDA dispatch is simulated on the CPU: tensors
that say ``is_cuda`` and an mmcv kernel that, like the real one, refuses
bf16."""
import glob
import os.path as osp

import mmdet.models.losses.focal_loss as mmdet_focal
import pytest
import torch
import torch.nn.functional as F
from mmdet.models.losses import FocalLoss

from helpers import REPO_ROOT
from pvt_mm import MODELS, FP32FocalLoss

NUM_CLASSES = 5
SETTINGS = [dict(), dict(gamma=1.5, alpha=0.3, loss_weight=2.0)]


def inputs(n=40):
    pred = torch.randn(n, NUM_CLASSES) * 3
    labels = torch.randint(0, NUM_CLASSES + 1, (n, ))  # NUM_CLASSES: bg
    weight = torch.rand(n)
    return pred, labels, weight


def both(**kw):
    return FocalLoss(**kw), FP32FocalLoss(**kw)


@pytest.mark.parametrize('kw', SETTINGS)
@pytest.mark.parametrize('reduction', ['mean', 'sum', 'none'])
def test_equals_mmdet_focal_loss_in_fp32(kw, reduction):
    ref, ours = both(**kw)
    pred, labels, weight = inputs()
    one_hot = F.one_hot(labels, NUM_CLASSES + 1)[:, :NUM_CLASSES].float()
    for target in (labels, one_hot):
        for w, avg in ((None, None), (weight, None), (weight, 7.0)):
            if avg is not None and reduction == 'sum':
                continue  # mmdet: avg_factor only with 'mean' / 'none'
            a = ref(pred, target, w, avg_factor=avg,
                    reduction_override=reduction)
            b = ours(pred, target, w, avg_factor=avg,
                     reduction_override=reduction)
            assert b.dtype == torch.float32
            assert torch.equal(a, b)


def test_built_from_a_config_and_reads_like_focal_loss():
    from mmdet.registry import MODELS as DET
    loss = DET.build(dict(type='pvt_mm.FP32FocalLoss', use_sigmoid=True,
                          gamma=2.0, alpha=0.25, loss_weight=2.0))
    assert type(loss) is FP32FocalLoss and MODELS.get('FP32FocalLoss')
    # what heads read off loss_cls (Sparse R-CNN: use_sigmoid)
    assert (loss.use_sigmoid, loss.gamma, loss.alpha, loss.loss_weight,
            loss.reduction) == (True, 2.0, 0.25, 2.0, 'mean')
    assert getattr(loss, 'custom_cls_channels', False) is False
    assert list(loss.state_dict()) == []  # checkpoints unchanged


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_half_inputs_give_the_fp32_loss_of_the_upcast_inputs(dtype):
    ref, ours = both()
    pred, labels, weight = inputs()
    pred = pred.to(dtype).requires_grad_()
    loss = ours(pred, labels, weight.to(dtype), avg_factor=7.0)
    assert loss.dtype == torch.float32
    expected = ref(pred.detach().float(), labels, weight.to(dtype).float(),
                   avg_factor=7.0)
    assert torch.equal(loss, expected)
    loss.backward()
    assert pred.grad.dtype == dtype and torch.isfinite(pred.grad).all()


def test_under_cpu_autocast_the_loss_runs_in_fp32():
    ref, ours = both()
    head = torch.nn.Linear(8, NUM_CLASSES)
    x = torch.randn(40, 8)
    _, labels, weight = inputs()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        pred = head(x)
        assert pred.dtype == torch.bfloat16
        loss = ours(pred, labels, weight, avg_factor=7.0)
    assert loss.dtype == torch.float32
    assert torch.equal(loss, ref(pred.float(), labels, weight, avg_factor=7.0))


class FakeCuda(torch.Tensor):
    """A CPU tensor that tells mmdet it lives on a GPU, so FocalLoss takes
    its CUDA branch (mmcv's kernel) instead of the pure-torch one."""

    @property
    def is_cuda(self):
        return True


@pytest.fixture
def cuda_kernel(monkeypatch):
    """mmcv's ``sigmoid_focal_loss`` as the CUDA build behaves: fp32 / fp16
    only (here computed with mmdet's pure-torch formula); every call's
    dtype is recorded."""
    calls = []

    def kernel(pred, target, gamma=2.0, alpha=0.25, weight=None,
               reduction='mean'):
        calls.append(pred.dtype)
        if pred.dtype == torch.bfloat16:
            raise RuntimeError('"sigmoid_focal_loss_forward_cuda_kernel" '
                               "not implemented for 'BFloat16'")
        assert weight is None and reduction == 'none'
        num = pred.size(1)
        one_hot = F.one_hot(target, num + 1)[:, :num]
        return mmdet_focal.py_sigmoid_focal_loss(
            pred.as_subclass(torch.Tensor), one_hot, None, gamma, alpha,
            'none')

    import mmcv.ops
    monkeypatch.setattr(mmcv.ops, 'sigmoid_focal_loss', kernel)
    monkeypatch.setattr(mmdet_focal, '_sigmoid_focal_loss', kernel)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    return calls


def test_cuda_kernel_gets_fp32_from_a_bf16_input(cuda_kernel):
    ref, ours = both()
    pred, labels, weight = inputs()
    bf16 = pred.bfloat16().as_subclass(FakeCuda)
    loss = ours(bf16, labels, weight, avg_factor=7.0)
    assert cuda_kernel == [torch.float32]  # the kernel ran, on fp32
    assert loss.dtype == torch.float32
    upcast = bf16.as_subclass(torch.Tensor).float()
    torch.testing.assert_close(  # the py formula vs the same formula
        loss.as_subclass(torch.Tensor),
        ref(upcast, labels, weight, avg_factor=7.0))


def test_negative_control_mmdet_focal_loss_hands_the_kernel_bf16(
        cuda_kernel):
    ref = FocalLoss()
    pred, labels, weight = inputs()
    bf16 = pred.bfloat16().as_subclass(FakeCuda)
    with pytest.raises(RuntimeError, match="not implemented for 'BFloat16'"):
        ref(bf16, labels, weight, avg_factor=7.0)
    assert cuda_kernel == [torch.bfloat16]


def _loss_types(node, found):
    if isinstance(node, dict):
        if str(node.get('type', '')).endswith('FocalLoss'):
            found.append(node['type'])
        for value in node.values():
            _loss_types(value, found)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _loss_types(value, found)
    return found


@pytest.mark.usefixtures('fast_config_parsing')
def test_no_config_uses_mmdet_focal_loss():
    """Every detector config of ours that has a focal loss computes it with
    FP32FocalLoss (GFL's QualityFocalLoss and DistributionFocalLoss are pure
    torch: no mmcv kernel, and autocast runs their BCE / CE in fp32)."""
    from mmengine.config import Config
    seen = set()
    for path in sorted(glob.glob(osp.join(REPO_ROOT, 'configs', '**',
                                          '*.py'), recursive=True)):
        name = osp.basename(path)
        if '_base_' in path or not name.startswith(
                ('retinanet', 'atss', 'sparse_rcnn', 'gfl')):
            continue
        types = _loss_types(Config.fromfile(path).model, [])
        assert 'FocalLoss' not in types, name
        seen.update(types)
    assert seen == {'pvt_mm.FP32FocalLoss', 'QualityFocalLoss',
                    'DistributionFocalLoss'}
