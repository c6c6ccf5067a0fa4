"""The output contract every pvt_mm backbone shares: what each returned
map is (:class:`FeatureSpec`, the data ``output_shape()`` returns), the
maps in the layout necks expect, and the pooled classification vector."""
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .layers import tokens_to_nchw


class FeatureSpec(NamedTuple):
    """What one returned map is, for the neck that reads it (as
    detectron2's ``ShapeSpec``): its channels and its stride in pixels."""
    channels: int
    stride: int


def pyramid_geometry(stages: Sequence[nn.Module]) -> Tuple[List[int],
                                                           List[int]]:
    """``(channels, stride in pixels)`` of each stage's map."""
    dims, strides = [], []
    for s in stages:
        dims.append(s.patch_embed.proj.out_channels)
        strides.append((strides[-1] if strides else 1) *
                       s.patch_embed.proj.stride[0])
    return dims, strides


def out_norms(dims: Sequence[int], out_indices: Sequence[int],
              eps: float) -> nn.ModuleDict:
    """A LayerNorm per returned map (keys: the map's index)."""
    return nn.ModuleDict({str(i): nn.LayerNorm(dims[i], eps=eps)
                          for i in out_indices})


def to_featmap(tokens: torch.Tensor, hw,
               norm: Optional[nn.Module] = None) -> torch.Tensor:
    """A returned map in the standard contiguous NCHW layout, as ResNet
    returns it (after ``norm``, if any).

    Inside the backbone maps are channels-last views of the tokens; the
    maps handed to necks and heads are copied to contiguous NCHW once,
    because mmcv ops read raw NCHW memory whatever the strides (mmcv 2.1's
    ``RoIAlign`` returns wrong features for a channels-last map, which FPN
    convolutions would propagate to the RoI heads) and heads ``.view``
    their maps (CenterNet's heatmap)."""
    if norm is not None:
        tokens = norm(tokens)
    return tokens_to_nchw(tokens, hw).contiguous()


def pool_tokens(tokens: torch.Tensor, num_prefix: int, out_type: str,
                norm: Optional[nn.Module] = None) -> torch.Tensor:
    """The classification vector from the last stage's tokens: the class
    token (``'cls_token'``) or the mean of the spatial tokens
    (``'avg_featmap'``), after ``norm``."""
    if out_type == 'cls_token':
        feat = tokens[:, 0]
        return norm(feat) if norm is not None else feat
    tokens = tokens[:, num_prefix:]
    if norm is not None:
        tokens = norm(tokens)
    return tokens.mean(dim=1)
