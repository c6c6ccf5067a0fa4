"""Model analysis for the tools (get_flops, benchmark, pytorch2onnx) and
the benchmarks: FLOP counting with fused attention included, building a
config's model in its library's scope, fake batches of a given size.

MMEngine's ``FlopAnalyzer`` traces the model and counts every operator it
has a handle for; ``F.scaled_dot_product_attention`` (the fused attention
all pvt_mm blocks use) has none, so plain use would silently leave the
attention matmuls out. :func:`flop_analyzer` registers a handle for it.
FLOPs are counted the way the PVT/CvT papers (and fvcore/MMEngine) count
them: one multiply-accumulate = one FLOP.
"""
from typing import Any, List, Optional, Sequence

import torch
import torch.nn as nn

from .engine.runner import init_scope

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


__all__ = ['DATA_SAMPLES', 'DEFAULT_SHAPES', 'sdpa_flop_jit', 'flop_analyzer',
           'count_macs', 'build_model', 'fake_data', 'fake_batch',
           'TensorForward', 'input_shape']
