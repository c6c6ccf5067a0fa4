"""Detection losses computed in fp32 under mixed precision.

MMDetection's ``FocalLoss`` (RetinaNet, ATSS, Sparse R-CNN) hands CUDA
tensors to mmcv's ``sigmoid_focal_loss`` kernel, which mmcv 2.1 implements
for fp32 and fp16 only: under bf16 autocast training stops with
``"sigmoid_focal_loss_forward_cuda_kernel" not implemented for 'BFloat16'``.
``pvt_mm.FP32FocalLoss`` is that same loss with its inputs cast to fp32 and
autocast off inside it (what ``torch.amp.custom_fwd(cast_inputs=
torch.float32)`` does for a function), so the kernel only ever sees fp32.
The loss is the official recipe's: the PVT detectors were trained with
MMDetection 2, whose heads computed their losses in fp32 under fp16
(``@force_fp32``); in fp32 nothing changes at all.

Configs select it in place of ``FocalLoss`` with the same arguments::

    loss_cls=dict(type='pvt_mm.FP32FocalLoss', use_sigmoid=True, gamma=2.0,
                  alpha=0.25, loss_weight=1.0)

It needs MMDetection only when built, so ``import pvt_mm`` (which registers
it) still imports no downstream library. Nothing global is patched.
"""
import torch
from torch import nn

from .registry import MODELS

LOW_PRECISION = (torch.float16, torch.bfloat16)


def to_fp32(x):
    """``x`` in fp32 if it is a half-precision tensor, else unchanged."""
    if isinstance(x, torch.Tensor) and x.dtype in LOW_PRECISION:
        return x.float()
    return x


@MODELS.register_module()
class FP32FocalLoss(nn.Module):
    """MMDetection's ``FocalLoss`` (same arguments, same result), computed
    in fp32 whatever the dtype of its inputs and the autocast state.

    Args:
        **kwargs: ``FocalLoss``'s: ``use_sigmoid``, ``gamma``, ``alpha``,
            ``reduction``, ``loss_weight``, ``activated``.
    """

    def __init__(self, **kwargs):
        super().__init__()
        from mmdet.models.losses import FocalLoss
        self.focal_loss = FocalLoss(**kwargs)

    def __getattr__(self, name):
        # Heads read the loss's settings (e.g. Sparse R-CNN's DIIHead reads
        # ``loss_cls.use_sigmoid``): those of the wrapped FocalLoss.
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == 'focal_loss':
                raise
            return getattr(self.focal_loss, name)

    def forward(self, pred, target, weight=None, avg_factor=None,
                reduction_override=None):
        """``FocalLoss.forward`` on fp32 copies of the half-precision
        inputs, with autocast disabled; returns an fp32 loss."""
        with torch.autocast(device_type=pred.device.type, enabled=False):
            return self.focal_loss(
                to_fp32(pred), to_fp32(target), to_fp32(weight),
                avg_factor=to_fp32(avg_factor),
                reduction_override=reduction_override)
