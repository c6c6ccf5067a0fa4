"""The official random initialisation of every pvt_mm backbone (before
any pretrained weights are loaded)."""
import math

import torch
import torch.nn as nn
from mmengine.model.weight_init import trunc_normal_
from torch.nn.modules.batchnorm import _BatchNorm


def official_init(model: nn.Module) -> None:
    """The official initialisation: truncated-normal linears and
    embeddings, fan-out normal convs, unit norms."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            std = math.sqrt(2.0 / (fan_out // m.groups))
            with torch.no_grad():  # drawn in index order, whatever the
                # weight's memory layout (layers.channels_last_conv)
                m.weight.copy_(torch.empty(
                    m.weight.shape, dtype=m.weight.dtype,
                    device=m.weight.device).normal_(0, std))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.LayerNorm, _BatchNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for name, p in model.named_parameters():
        if name.endswith(('pos_embed', 'cls_token')):
            trunc_normal_(p, std=.02)
