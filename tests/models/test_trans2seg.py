"""pvt_mm.Trans2SegHead: the published Trans2Seg computation, its size with
PVT-Small, clear errors, every parameter trained, a loss that falls."""
import pytest
import torch
import torch.nn.functional as F

import pvt_mm
from pvt_mm.analysis import count_macs
from pvt_mm.heads import Trans2SegHead
from pvt_mm.heads.trans2seg import ClassAttention, DecoderLayer


def tiny_head(**kwargs):
    args = dict(num_classes=5, in_channels=(32, 256), in_index=(0, 3),
                channels=16, embed_dims=32, num_layers=2, num_heads=4,
                mlp_ratio=2., feat_size=(2, 2), norm_cfg=dict(type='BN'))
    args.update(kwargs)
    head = Trans2SegHead(**args)
    head.init_weights()
    return head


def maps(batch=2, side=64):
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(batch, c, side // s, side // s, generator=gen)
            for c, s in ((32, 4), (64, 8), (160, 16), (256, 32))]


def test_size_with_pvt_small_as_documented():
    """The numbers the config header and docs/model_zoo.md state: 30.8M
    parameters with PVT-Small, 16.0 GMACs for the head at 512x512 (plus the
    backbone's 23.1)."""
    head = Trans2SegHead(num_classes=150).eval()
    backbone = pvt_mm.PVTv1(arch='small')
    params = sum(p.numel() for m in (head, backbone) for p in m.parameters())
    assert abs(params / 1e6 - 30.75) < 0.01

    class Head(torch.nn.Module):  # the head on (c1, c4) alone
        def __init__(self):
            super().__init__()
            self.head = head

        def forward(self, c1, c4):
            return self.head([c1, None, None, c4])

    macs = count_macs(Head(), torch.zeros(1, 64, 128, 128),
                      torch.zeros(1, 512, 16, 16))
    assert abs(macs / 1e9 - 15.98) < 0.01


def test_forward_shape_and_clear_errors():
    head = tiny_head().eval()
    with torch.no_grad():
        out = head(maps())
    assert out.shape == (2, 5, 16, 16)  # one mask per class at stride 4
    with pytest.raises(ValueError, match="2x2 deepest map.*got 3x3.*slide"):
        head(maps(side=96))
    with pytest.raises(ValueError, match='reads two maps'):
        tiny_head(in_channels=(32, 64, 256), in_index=(0, 1, 3))


def test_single_head_class_attention_is_plain_attention():
    """With one head the published reshape-only head split is the usual
    one: logits = q k^T / sqrt(d), output = proj(softmax(logits) v)."""
    torch.manual_seed(0)
    attn = ClassAttention(8, num_heads=1)
    query, tokens = torch.randn(2, 3, 8), torch.randn(2, 6, 8)
    logits, out = attn(query, tokens)
    q = attn.q(query)
    k, v = attn.kv(tokens).chunk(2, dim=-1)
    expected = q @ k.transpose(1, 2) / 8 ** 0.5
    assert torch.allclose(logits[:, :, 0], expected, atol=1e-6)
    assert torch.allclose(
        out, attn.proj(F.scaled_dot_product_attention(q, k, v)), atol=1e-6)
    # with several heads the split mixes classes and channels: not equal
    attn4 = ClassAttention(8, num_heads=4)
    q4 = attn4.q(query).reshape(2, 3, 4, 2).transpose(1, 2)  # usual split
    k4 = attn4.kv(tokens)[..., :8].reshape(2, 6, 4, 2).transpose(1, 2)
    usual = (q4 @ k4.transpose(-2, -1)) / 2 ** 0.5
    assert not torch.allclose(attn4(query, tokens)[0].transpose(1, 2), usual)


def test_decoder_layer_doubles_its_outputs_before_the_ffns():
    """The published layer: y = 2x + FFN(norm(2x)) for the attended
    queries and the tokens (the last layer: for the attention logits), with
    no residual from the layer's inputs. With the FFNs' last linear layers
    zeroed only 2x remains."""
    torch.manual_seed(0)
    query, tokens = torch.randn(2, 3, 8), torch.randn(2, 6, 8)
    layer = DecoderLayer(8, num_heads=2, mlp_ratio=2., num_tokens=6)
    last = DecoderLayer(8, num_heads=2, mlp_ratio=2., num_tokens=6, last=True)
    for ffn in (layer.query_ffn, layer.tokens_ffn, last.attn_ffn):
        torch.nn.init.zeros_(ffn.fc2.weight)
        torch.nn.init.zeros_(ffn.fc2.bias)
    attn, q, t = layer(query, tokens)
    _, attended = layer.attn(layer.norm_query(query),
                             layer.norm_tokens(tokens))
    assert attn is None
    assert torch.allclose(q, 2 * attended) and torch.allclose(t, 2 * tokens)
    attn, q, t = last(query, tokens)
    logits, _ = last.attn(last.norm_query(query), last.norm_tokens(tokens))
    assert q is None and t is None and torch.allclose(attn, 2 * logits)
    # what no later step reads is not built
    assert not hasattr(last, 'query_ffn') and last.attn.proj is None
    assert not hasattr(layer, 'attn_ffn')


def test_every_parameter_is_trained_and_the_loss_falls():
    """Through MMSegmentation's EncoderDecoder (the config's path): every
    head parameter gets a gradient (multi-GPU training needs no
    find_unused_parameters) and a few steps on one batch lower the loss."""
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    from mmengine.structures import PixelData
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='EncoderDecoder',
        backbone=dict(type='pvt_mm.PVTv2', arch='b0', drop_path_rate=0.),
        decode_head=dict(type='pvt_mm.Trans2SegHead', num_classes=3,
                         in_channels=(32, 256), in_index=(0, 3), channels=16,
                         embed_dims=32, num_layers=2, num_heads=4,
                         mlp_ratio=2., feat_size=(2, 2),
                         norm_cfg=dict(type='BN'))))
    model.init_weights()
    # a learnable task: 8x8-pixel blocks of 3 classes, each class its own
    # colour, plus noise
    gen = torch.Generator().manual_seed(0)
    blocks = torch.randint(0, 3, (2, 1, 8, 8), generator=gen)
    label = F.interpolate(blocks.float(), size=(64, 64)).long()
    colours = torch.tensor([[-1., 0., 1.], [1., -1., 0.], [0., 1., -1.]])
    x = (colours[label[:, 0]].permute(0, 3, 1, 2)
         + 0.3 * torch.randn(2, 3, 64, 64, generator=gen))
    samples = []
    for i in range(2):
        s = SegDataSample(gt_sem_seg=PixelData(data=label[i]))
        s.set_metainfo(dict(img_shape=(64, 64), ori_shape=(64, 64),
                            pad_shape=(64, 64)))
        samples.append(s)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for step in range(25):
        loss, _ = model.parse_losses(model.loss(x, samples))
        opt.zero_grad()
        loss.backward()
        if step == 0:
            no_grad = [n for n, p in model.decode_head.named_parameters()
                       if p.grad is None or not p.grad.abs().sum()]
            assert not no_grad, no_grad
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
