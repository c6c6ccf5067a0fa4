"""Trans2Seg's transformer segmentation head, for the PVTv1 paper's
"PVT-Small + Trans2Seg" row (Table 7: 42.6 mIoU on ADE20K).

Trans2Seg (Xie et al., "Segmenting Transparent Objects in the Wild with
Transformer", 2021) reads two maps of the backbone: the deepest (``c4``)
and the stride-4 one (``c1``).

1. **Encoder.** ``c4`` is flattened to tokens and projected to
   ``embed_dims`` (the "hybrid embedding"); a class token is prepended,
   learned position embeddings (stored for a 32x32 grid, resized bilinearly
   to the map) are added, and ``num_layers`` pre-norm ViT layers follow.
2. **Decoder.** One learned query per class attends to the encoded tokens in
   ``num_layers`` layers; the class embeddings are added to the queries again
   before every layer after the first. Each layer also refines the
   attention *logits* (class x head x position) with an MLP across the
   positions, which fixes the number of positions: ``feat_size`` (16x16 for
   a 512x512 input at stride 32).
3. **Mask head.** For every class, the encoded map and that class's
   per-head attention maps are stacked and decoded by separable convolutions
   into one mask logit map at stride 4, with the projected ``c1`` added
   after upsampling.

The computation follows the published Trans2Seg code (xieenze/Trans2Seg,
``segmentron/models/trans2seg.py`` and ``modules/transformer.py``), whose
"medium" setting is the default here (``embed_dims=256, num_layers=4,
num_heads=8, mlp_ratio=3, channels=64``). With PVT-Small on a 512x512
input this gives 30.8M parameters (32.9M as published, which also builds
updates that nothing reads: see :class:`DecoderLayer`) and 39.1 GFLOPs
(the backbone's 23.1 + the head's 16.0; tested). The paper reports 32.1M
and 31.6 GFLOPs, so its variant differs in a way nobody published (the
same counter gives the paper's 28.2M / 44.5 GFLOPs for Semantic FPN +
PVT-Small). Three details of that code are kept because they are what
produced the published numbers:

* the decoder attention splits the projected queries / outputs into heads
  with a plain ``reshape`` (no transpose), so a "head" mixes classes;
* each decoder layer adds its attention output, tokens and attention logits
  to themselves (``x + drop_path(x)`` with the drop path off) before their
  MLP residuals: the published layer has no residual from its inputs;
* the attention maps handed to the mask head are the pre-softmax logits.
"""
import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, DepthwiseSeparableConvModule
from mmengine.model.weight_init import trunc_normal_
from mmseg.models.decode_heads.decode_head import BaseDecodeHead

from ..registry import MODELS


class FFN(nn.Sequential):
    """Linear -> GELU -> Linear."""

    def __init__(self, dims: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dims, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dims)


class EncoderLayer(nn.Module):
    """Pre-norm ViT layer (multi-head self-attention, FFN)."""

    def __init__(self, dims: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(dims)
        self.qkv = nn.Linear(dims, 3 * dims, bias=False)
        self.proj = nn.Linear(dims, dims)
        self.norm2 = nn.LayerNorm(dims)
        self.ffn = FFN(dims, int(dims * mlp_ratio))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = (self.qkv(x).reshape(b, n, 3, self.num_heads, -1)
                   .permute(2, 0, 3, 1, 4))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class ClassAttention(nn.Module):
    """Class queries attend to the tokens; returns the attention logits
    ``(B, classes, heads, tokens)`` and the attended queries (``None`` when
    built with ``with_output=False``: logits only)."""

    def __init__(self, dims: int, num_heads: int, with_output: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dims // num_heads) ** -0.5
        self.q = nn.Linear(dims, dims, bias=False)
        self.kv = nn.Linear(dims, 2 * dims if with_output else dims,
                            bias=False)
        self.proj = nn.Linear(dims, dims) if with_output else None

    def forward(self, query: torch.Tensor, tokens: torch.Tensor
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        b, n, c = tokens.shape
        classes, heads = query.shape[1], self.num_heads
        # heads split by reshape alone, as the published code does
        q = self.q(query).reshape(b, heads, classes, c // heads)
        kv = (self.kv(tokens).reshape(b, n, -1, heads, c // heads)
              .permute(2, 0, 3, 1, 4))
        logits = (q @ kv[0].transpose(-2, -1)) * self.scale
        out = None
        if self.proj is not None:
            out = self.proj((logits.softmax(dim=-1) @ kv[1])
                            .reshape(b, classes, c))
        return logits.permute(0, 2, 1, 3), out


class DecoderLayer(nn.Module):
    """Class attention, then FFN updates: of the attended queries and the
    tokens for the next layer, or, in the last layer, of the attention
    logits (an FFN across the ``num_tokens`` positions) for the mask head.

    The published layer computes all three updates in every layer, but only
    the last layer's logits and the other layers' queries and tokens are
    ever read; the rest is not built here (in the "medium" size 1.2M
    parameters that would never receive a gradient, which multi-GPU
    training rejects unless told to look for unused parameters)."""

    def __init__(self, dims: int, num_heads: int, mlp_ratio: float,
                 num_tokens: int, last: bool = False):
        super().__init__()
        self.last = last
        self.norm_query = nn.LayerNorm(dims)
        self.norm_tokens = nn.LayerNorm(dims)
        self.attn = ClassAttention(dims, num_heads, with_output=not last)
        if last:
            self.norm_attn_ffn = nn.LayerNorm(num_tokens)
            self.attn_ffn = FFN(num_tokens, 3 * num_tokens)
        else:
            self.norm_query_ffn = nn.LayerNorm(dims)
            self.query_ffn = FFN(dims, int(dims * mlp_ratio))
            self.norm_tokens_ffn = nn.LayerNorm(dims)
            self.tokens_ffn = FFN(dims, int(dims * mlp_ratio))

    def forward(self, query: torch.Tensor, tokens: torch.Tensor):
        """``(attention logits, None, None)`` in the last layer,
        ``(None, queries, tokens)`` in the others."""
        attn, query = self.attn(self.norm_query(query),
                                self.norm_tokens(tokens))
        # x + x: the published layer's ``x + drop_path(x)``, drop path off
        if self.last:
            attn = 2 * attn
            return attn + self.attn_ffn(self.norm_attn_ffn(attn)), None, None
        query = 2 * query
        query = query + self.query_ffn(self.norm_query_ffn(query))
        tokens = 2 * tokens
        tokens = tokens + self.tokens_ffn(self.norm_tokens_ffn(tokens))
        return None, query, tokens


def _per_class(x: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B * classes, C, H, W)``, one copy per class."""
    return x.unsqueeze(1).expand(-1, num_classes, -1, -1, -1).flatten(0, 1)


@MODELS.register_module()
class Trans2SegHead(BaseDecodeHead):
    """Trans2Seg decode head (see the module docstring).

    Args:
        in_channels (Sequence[int]): channels of ``c1`` (stride 4) and
            ``c4`` (the deepest map), in that order.
        in_index (Sequence[int]): the two maps' indices in the backbone
            outputs, e.g. ``(0, 3)``.
        channels (int): width of the mask head (``hid_dim``, 64).
        embed_dims, num_layers, num_heads, mlp_ratio: the transformer
            (Trans2Seg-Medium: 256, 4, 8, 3).
        feat_size (tuple): the ``c4`` grid the decoder is built for (16x16
            for 512x512 crops at stride 32). Inputs must give this grid:
            use 512x512 crops for training and ``mode='slide'`` with 512x512
            crops for testing.
        pos_grid (int): side of the stored position-embedding grid (32).
    """

    def __init__(self, in_channels: Sequence[int] = (64, 512),
                 channels: int = 64, *, in_index: Sequence[int] = (0, 3),
                 embed_dims: int = 256, num_layers: int = 4,
                 num_heads: int = 8, mlp_ratio: float = 3.,
                 feat_size: Tuple[int, int] = (16, 16), pos_grid: int = 32,
                 norm_cfg=dict(type='BN'), align_corners: bool = True,
                 init_cfg=None, **kwargs):
        if len(in_channels) != 2 or len(in_index) != 2:
            raise ValueError(
                f'Trans2SegHead reads two maps, c1 (stride 4) and the deepest '
                f'one: give in_channels=(c1, c4) and in_index=(i1, i4), got '
                f'in_channels={in_channels}, in_index={in_index}')
        super().__init__(list(in_channels), channels, in_index=list(in_index),
                         input_transform='multiple_select', norm_cfg=norm_cfg,
                         align_corners=align_corners, dropout_ratio=0.,
                         init_cfg=init_cfg, **kwargs)
        del self.conv_seg  # each class's mask comes from `pred`
        c1_channels, c4_channels = in_channels
        self.feat_size = tuple(feat_size)
        num_tokens = self.feat_size[0] * self.feat_size[1]
        self.embed = nn.Linear(c4_channels, embed_dims)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
        self.pos_embed = nn.Parameter(
            torch.zeros(1, pos_grid * pos_grid + 1, embed_dims))
        self.encoder = nn.ModuleList(
            EncoderLayer(embed_dims, num_heads, mlp_ratio)
            for _ in range(num_layers))
        self.encoder_norm = nn.LayerNorm(embed_dims)
        self.class_embed = nn.Parameter(
            torch.zeros(1, self.num_classes, embed_dims))
        self.decoder = nn.ModuleList(
            DecoderLayer(embed_dims, num_heads, mlp_ratio, num_tokens,
                         last=i == num_layers - 1)
            for i in range(num_layers))

        def sep_conv(cin: int) -> nn.Module:
            return DepthwiseSeparableConvModule(
                cin, channels, 3, padding=1, norm_cfg=norm_cfg,
                act_cfg=dict(type='ReLU'), bias=False)

        self.mask_conv1 = sep_conv(embed_dims + num_heads)
        self.mask_conv2 = sep_conv(channels)
        self.c1_proj = ConvModule(c1_channels, channels, 1, norm_cfg=norm_cfg,
                                  act_cfg=dict(type='ReLU'), bias=False)
        self.mask_conv3 = sep_conv(channels)
        self.pred = nn.Conv2d(channels, 1, 1)

    def init_weights(self) -> None:
        super().init_weights()
        if self.init_cfg is not None:
            return
        for m in [self.embed, self.encoder, self.encoder_norm, self.decoder]:
            m.apply(_init_transformer)
        for p in (self.pos_embed, self.cls_token, self.class_embed):
            trunc_normal_(p, std=.02)
        for m in self.modules():  # PyTorch's default, as the published code
            if isinstance(m, nn.Conv2d):
                m.reset_parameters()

    def position_embedding(self, h: int, w: int) -> torch.Tensor:
        cls_pos, grid = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        side = math.isqrt(grid.shape[1])
        if (h, w) != (side, side):
            grid = grid.reshape(1, side, side, -1).permute(0, 3, 1, 2)
            grid = F.interpolate(grid, (h, w), mode='bilinear',
                                 align_corners=True)
            grid = grid.flatten(2).transpose(1, 2)
        return torch.cat([cls_pos, grid], dim=1)

    def forward(self, inputs: List[torch.Tensor]) -> torch.Tensor:
        c1, c4 = self._transform_inputs(inputs)
        b, _, h, w = c4.shape
        if (h, w) != self.feat_size:
            raise ValueError(
                f'Trans2SegHead was built for a {self.feat_size[0]}x'
                f'{self.feat_size[1]} deepest map (its decoder has an MLP '
                f'across those positions) but got {h}x{w}: feed crops of the '
                f'training size (test_cfg=dict(mode=\'slide\', '
                f'crop_size=...)) '
                f'or set feat_size to the map the crops give')
        tokens = self.embed(c4.flatten(2).transpose(1, 2))
        tokens = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1)
        tokens = tokens + self.position_embedding(h, w)
        for layer in self.encoder:
            tokens = layer(tokens)
        tokens = self.encoder_norm(tokens)[:, 1:]

        feat, query = tokens, None
        for layer in self.decoder:
            query = (self.class_embed.expand(b, -1, -1) if query is None
                     else query + self.class_embed)
            attn, query, feat = layer(query, feat)

        classes = self.num_classes
        # the encoder's map (not the decoder's tokens) beside each class's
        # per-head attention logits
        enc_map = tokens.transpose(1, 2).reshape(b, -1, h, w)
        attn = attn.reshape(b * classes, -1, h, w)
        x = torch.cat([_per_class(enc_map, classes), attn], dim=1)
        x = self.mask_conv2(self.mask_conv1(x))
        x = F.interpolate(x, c1.shape[2:], mode='bilinear',
                          align_corners=True)
        x = x + _per_class(self.c1_proj(c1), classes)
        x = self.pred(self.mask_conv3(x))
        return x.reshape(b, classes, *c1.shape[2:])


def _init_transformer(m: nn.Module) -> None:
    """Truncated-normal linear weights, zero biases, unit LayerNorms (the
    published code's initialisation of its transformer)."""
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
