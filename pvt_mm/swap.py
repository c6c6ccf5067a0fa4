"""Put a pvt_mm backbone into any MMDetection / MMSegmentation config.

One call replaces the config's backbone and adapts what reads the
backbone's outputs::

    from mmengine.config import Config
    from pvt_mm import swap_backbone
    cfg = swap_backbone(
        Config.fromfile('mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'),
        'pvt_v2_b0')

or, as a config file that inherits the original (``tools/misc/swap_backbone.py``
writes it; :func:`swap_overrides` gives its content)::

    python tools/misc/swap_backbone.py \\
        mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py pvt_v2_b0 -o my.py

What changes (and nothing else):

- ``backbone``: replaced (``_delete_``) by the pvt_mm backbone base
  ``configs/_base_/models/<name>.py``, returning the same pyramid levels the
  old backbone fed forward: the old backbone's outputs are read as stages
  (stage ``i`` has nominal stride ``4 * 2**i``; a dilated ResNet's stage 4 is
  still "stage 4") and ``out_indices`` selects the same stages of ours. So
  YOLOF / DETR (ResNet stage 4 only) get ``out_indices=(3,)``, Deformable
  DETR / DINO get ``(1, 2, 3)``. ResNet-only arguments (``depth``,
  ``frozen_stages``, ``norm_eval``, ``style``...) are not carried over.
- What consumes the backbone: the first neck's ``in_channels`` (a list, an
  int, or CenterNet's ``in_channel``), or, without a neck, the segmentor's
  decode / auxiliary heads (by their ``in_index``) and a detector's heads
  that read the backbone directly (MaskFormer / Mask2Former).
- ``model.pretrained`` (MMSegmentation's segmentors copy it into the
  backbone) is cleared: the old backbone's checkpoint never reaches ours.
  The backbone's ``init_cfg`` is ours: ``pretrained='default'`` keeps the
  base's official download URL (fetched once into torch hub's cache), a
  path or URL uses that file, ``None`` trains from scratch.
- ``data_preprocessor``: ImageNet RGB mean / std, the normalisation all
  pvt_mm weights were trained with (Caffe-style configs use BGR and
  std 1).
- ``custom_imports`` gains ``pvt_mm``.

Anything else the swap cannot decide raises a ``ValueError`` that says what
to set by hand.
"""
import copy
import math
import os.path as osp
from typing import Dict, List, Optional, Tuple, Union

from pvt_mm_config_hook import config_path  # noqa: F401 (as before)

#: ImageNet normalisation (RGB, 0-255 scale) of every pvt_mm checkpoint.
IMAGENET_MEAN = [123.675, 116.28, 103.53]
IMAGENET_STD = [58.395, 57.12, 57.375]

#: Backbones of ResNet's stage layout: 4 stages, channels
#: ``base_channels * expansion * 2**i``.
RESNET_LIKE = ('ResNet', 'ResNetV1c', 'ResNetV1d', 'ResNeXt', 'ResNeSt',
               'Res2Net', 'mmdet.ResNet', 'mmseg.ResNetV1c', 'mmseg.ResNet')

BackboneArg = Union[str, dict]


def _type_name(cfg: dict) -> str:
    t = cfg.get('type', '')
    return t if isinstance(t, str) else getattr(t, '__name__', str(t))


def _short(t: str) -> str:
    return t.split('.')[-1]


def backbone_stages(backbone: dict) -> List[Tuple[int, int]]:
    """``(stage, channels)`` of each output of an OpenMMLab backbone config,
    in output order (stage ``i``: nominal stride ``4 * 2**i``)."""
    t = _short(_type_name(backbone))
    if t in {_short(n) for n in RESNET_LIKE}:
        depth = backbone.get('depth', 50)
        expansion = 1 if depth in (18, 34) else 4
        base = backbone.get('base_channels', 64)
        out = backbone.get('out_indices', (0, 1, 2, 3))
        return [(i, base * expansion * 2 ** i) for i in out]
    if t == 'MixVisionTransformer':
        dims, heads = backbone.get('embed_dims', 64), backbone.get(
            'num_heads', [1, 2, 4, 8])
        out = backbone.get('out_indices', (0, 1, 2, 3))
        return [(i, dims * heads[i]) for i in out]
    if t == 'SwinTransformer':
        dims = backbone.get('embed_dims', 96)
        out = backbone.get('out_indices', (0, 1, 2, 3))
        return [(i, dims * 2 ** i) for i in out]
    if t == 'PyramidVisionTransformer' or t == 'PyramidVisionTransformerV2':
        dims = backbone.get('embed_dims', 64)
        heads = backbone.get('num_heads', [1, 2, 5, 8])
        out = backbone.get('out_indices', (0, 1, 2, 3))
        return [(i, dims * heads[i]) for i in out]
    if t == 'MSCAN' or isinstance(backbone.get('embed_dims'), (list, tuple)):
        dims = backbone['embed_dims']  # one width per stage (SegNeXt...)
        out = backbone.get('out_indices', tuple(range(len(dims))))
        return [(i, dims[i]) for i in out]
    if t in ('PVTv1', 'PVTv2', 'CvT'):
        raise ValueError('the config already has a pvt_mm backbone')
    if t == 'Darknet':  # output k has stride 2**k, 32 * 2**k channels
        out = backbone.get('out_indices', (3, 4, 5))
        return [(k - 2, 32 * 2 ** k) for k in out]
    if t in ('CSPDarknet', 'CSPNeXt'):  # output k: stride 2**(k+1)
        widen = backbone.get('widen_factor', 1.0)
        out = backbone.get('out_indices', (2, 3, 4))
        return [(k - 1, int(64 * 2 ** k * widen)) for k in out]
    if t == 'SSDVGG':  # conv4_3 (stride 8) and fc7 (stride 16)
        return [(1, 512), (2, 1024)]
    raise ValueError(
        f'swap_backbone: cannot tell which pyramid levels a {t!r} backbone '
        f'returns; replace it by hand (docs/use_in_your_project.md) and set '
        f"the neck's in_channels to the pvt_mm backbone's out_channels")


def load_backbone_base(backbone: BackboneArg) -> Tuple[dict, List[int], dict]:
    """``(backbone dict, channels of stages 0-3, custom_imports)`` of a
    pvt_mm backbone: a base name (``'pvt_v2_b0'``, ``'cvt_13'``...) or a
    backbone dict (built to read its channels)."""
    if isinstance(backbone, str):
        from mmengine.config import Config
        from pvt_mm_config_hook import configs_dir
        path = osp.join(configs_dir(), '_base_', 'models', backbone + '.py')
        if not osp.isfile(path):
            import glob
            names = sorted(osp.splitext(osp.basename(p))[0] for p in glob.glob(
                osp.join(osp.dirname(path), '*.py')))
            raise ValueError(f'swap_backbone: unknown backbone {backbone!r}; '
                             f'one of {", ".join(names)} or a backbone dict')
        base = Config.fromfile(path)
        bb = base.backbone.to_dict()
        channels = list(base.backbone_channels)
        imports = base.custom_imports.to_dict()
        return bb, channels, imports
    if isinstance(backbone, dict):
        from .registry import MODELS
        bb = dict(backbone)
        probe = dict(bb, init_cfg=None, out_indices=None)
        probe.pop('out_indices')
        model = MODELS.build(probe)
        channels = [None] * 4
        for c, s in model.output_shape():
            lvl = int(round(math.log2(s))) - 2
            if 0 <= lvl < 4:
                channels[lvl] = c
        return bb, channels, dict(imports=['pvt_mm'],
                                  allow_failed_imports=False)
    raise TypeError('backbone must be a base name or a dict')


def _map_channels(value, old_to_new: Dict[int, int], where: str):
    """``value`` (int or list of ints) with each old backbone width
    replaced by ours; ``None`` if it is not made of old widths."""
    if isinstance(value, int) and value in old_to_new:
        return old_to_new[value]
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, int) and v in old_to_new for v in value):
        return type(value)(old_to_new[v] for v in value)  # JPU wants a tuple
    return None


def _positions(in_index, n: int) -> Union[int, List[int]]:
    if isinstance(in_index, (list, tuple)):
        return [i % n for i in in_index]
    return in_index % n


def _head_channels(head: dict, out_channels: List[int],
                   old_to_new: Dict[int, int]) -> dict:
    """The edit of a segmentor head reading the backbone's outputs
    (``out_channels`` per position) through ``in_index``, or, without
    ``in_index``, all of them (MaskFormer-style heads: by width)."""
    if 'kernel_generate_head' in head:  # K-Net wraps the real head
        inner = _head_channels(head['kernel_generate_head'], out_channels,
                               old_to_new)
        return dict(kernel_generate_head=inner) if inner else {}
    if 'in_channels' not in head:
        return {}
    if 'in_index' not in head and isinstance(head['in_channels'],
                                             (list, tuple)):
        new = _map_channels(head['in_channels'], old_to_new, 'head')
        return {} if new is None else dict(in_channels=new)
    pos = _positions(head.get('in_index', -1), len(out_channels))
    edit = dict(in_channels=[out_channels[p] for p in pos]
                if isinstance(pos, list) else out_channels[pos])
    if 'c1_in_channels' in head:  # DeepLabV3+: low-level features
        edit['c1_in_channels'] = out_channels[_positions(
            head.get('c1_in_index', 0), len(out_channels))]
    return edit


def _same_level_cascade(model: dict, stages) -> bool:
    """A cascade of single-level heads reading different stages that the
    old backbone gave the same stride (a dilated ResNet)."""
    if _short(_type_name(model)) != 'CascadeEncoderDecoder':
        return False
    index = [h.get('in_index', -1) for h in model['decode_head']]
    if not all(isinstance(i, int) for i in index) or len(set(index)) < 2:
        return False
    bb = model['backbone']
    strides = bb.get('strides', (1, 2, 2, 2))
    total, actual = 4, []
    for st in strides:
        total *= st
        actual.append(total)
    out = [s for s, _ in stages]
    return len({actual[out[i]] for i in index if out[i] < len(actual)}) == 1


def _heads(model: dict, key: str):
    head = model.get(key)
    if head is None:
        return []
    return list(head) if isinstance(head, (list, tuple)) else [head]


def swap_overrides(cfg, backbone: BackboneArg = 'pvt_v2_b0',
                   pretrained: Optional[str] = 'default') -> dict:
    """The config entries that put ``backbone`` into ``cfg`` (a parsed
    MMDetection / MMSegmentation config), as a dict to merge into it
    (``cfg.merge_from_dict``) or to write below ``_base_ = [original]``.
    See the module docstring for what changes."""
    model = cfg['model']
    holder_key = None
    if 'backbone' not in model and 'detector' in model:
        holder_key = 'detector'  # semi-supervised / tracking wrappers
        model = model['detector']
    if 'backbone' not in model:
        raise ValueError('swap_backbone: the config has no model.backbone')
    stages = backbone_stages(model['backbone'])
    new_bb, new_channels, imports = load_backbone_base(backbone)
    levels = [s for s, _ in stages]
    if any(not 0 <= s < len(new_channels) or new_channels[s] is None
           for s in levels):
        raise ValueError(
            f'swap_backbone: the config reads backbone stages {levels} '
            f'(strides {[4 * 2 ** s for s in levels]}); the pvt_mm backbone '
            f'has stages {[i for i, c in enumerate(new_channels) if c]}')
    out_indices = tuple(dict.fromkeys(levels))
    new_bb = copy.deepcopy(new_bb)
    new_bb['out_indices'] = out_indices
    if new_bb.get('extra_downsample') and 3 not in out_indices:
        new_bb.pop('extra_downsample')  # CvT: only a 4th level needs it
    if pretrained is None:
        new_bb['init_cfg'] = None
    elif pretrained != 'default':
        new_bb['init_cfg'] = dict(type='Pretrained', checkpoint=pretrained)
    old_to_new = {c: new_channels[s] for s, c in stages}
    out_channels = [new_channels[s] for s in out_indices]

    edits: dict = dict(backbone=dict(_delete_=True, **new_bb))
    neck = model.get('neck')
    is_segmentor = 'decode_head' in model
    if neck is not None:
        first = neck[0] if isinstance(neck, (list, tuple)) else neck
        edit = {}
        for key in ('in_channels', 'in_channel'):
            if key in first:
                new = _map_channels(first[key], old_to_new, 'neck')
                if new is not None:
                    edit[key] = new
        if not edit:
            raise ValueError(
                f"swap_backbone: the neck {_type_name(first)!r} does not "
                f'take the old backbone widths {sorted(old_to_new)}; set its '
                f'input channels by hand to {out_channels}')
        if _short(_type_name(first)) == 'SSDNeck':
            # SSD's neck passes its inputs through as its first outputs
            n = len(edit['in_channels'])
            outs = list(edit['in_channels']) + list(first['out_channels'][n:])
            edit['out_channels'] = type(first['out_channels'])(outs)
            edits['bbox_head'] = dict(in_channels=type(
                model['bbox_head']['in_channels'])(outs))
        if isinstance(neck, (list, tuple)):
            necks = [dict(n) for n in neck]
            necks[0] = dict(necks[0], **edit)
            edits['neck'] = necks
        else:
            edits['neck'] = edit
        if is_segmentor and _short(_type_name(first)) == 'JPU':
            # JPU passes its inputs through except the last (the fused map)
            start = first.get('start_level', 0)
            n = len(out_channels) - start
            raw = {p - start: out_channels[p]
                   for p in range(start, len(out_channels) - 1)}
            for key in ('decode_head', 'auxiliary_head'):
                heads = _heads(model, key)
                new_heads = []
                for h in heads:
                    index = h.get('in_index', -1)
                    many = isinstance(index, (list, tuple))
                    pos = [i % n for i in index] if many else [index % n]
                    old = h.get('in_channels')
                    old = list(old) if many else [old]
                    chans = [raw[p] if p in raw else c
                             for p, c in zip(pos, old)]
                    if chans != old:
                        h = dict(h, in_channels=chans if many else chans[0])
                    new_heads.append(h)
                if new_heads != heads:
                    edits[key] = (new_heads if isinstance(model[key], (
                        list, tuple)) else dict(
                            in_channels=new_heads[0]['in_channels']))
    elif is_segmentor:
        for key in ('decode_head', 'auxiliary_head'):
            heads = _heads(model, key)
            if not heads:
                continue
            if isinstance(model[key], (list, tuple)):
                if key == 'decode_head' and _same_level_cascade(
                        model, stages):
                    # OCRNet: the cascade's heads combine their maps, equal
                    # in size on a dilated ResNet; on a pyramid they read
                    # the deepest level the last head reads.
                    last = heads[-1].get('in_index', -1)
                    heads = [dict(h, in_index=last) for h in heads]
                edits[key] = [_merged(h, _head_channels(h, out_channels,
                                                        old_to_new))
                              for h in heads]
            else:
                edits[key] = _head_channels(heads[0], out_channels,
                                            old_to_new)
    else:  # a detector whose head reads the backbone (MaskFormer family)
        for key, head in model.items():
            if key in ('backbone', 'data_preprocessor', 'train_cfg',
                       'test_cfg', 'init_cfg') or not isinstance(head, dict):
                continue
            new = _map_channels(head.get('in_channels'), old_to_new, key)
            if new is not None:
                edits[key] = dict(in_channels=new)
        if len(edits) == 1:
            raise ValueError(
                'swap_backbone: found no neck or head that reads the '
                f'backbone; set its in_channels by hand to {out_channels}')

    if 'pretrained' in model:
        edits['pretrained'] = None
    dp = model.get('data_preprocessor')
    if isinstance(dp, dict) and 'mean' in dp:
        edits['data_preprocessor'] = dict(mean=IMAGENET_MEAN, std=IMAGENET_STD,
                                          bgr_to_rgb=True)
    out = dict(model=dict(detector=edits) if holder_key else edits)
    old_imports = cfg.get('custom_imports') or {}
    names = list(old_imports.get('imports', []))
    for name in imports.get('imports', ['pvt_mm']):
        if name not in names:
            names.append(name)
    out['custom_imports'] = dict(imports=names, allow_failed_imports=False)
    return out


def _merged(base: dict, edit: dict) -> dict:
    out = dict(base)
    for k, v in edit.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(
            out.get(k), dict) else v
    return out


def swap_backbone(cfg, backbone: BackboneArg = 'pvt_v2_b0',
                  pretrained: Optional[str] = 'default'):
    """A copy of ``cfg`` (an MMEngine ``Config``) with ``backbone`` (a
    pvt_mm base name such as ``'pvt_v2_b0'`` / ``'cvt_13'``, or a backbone
    dict) in place of its backbone; see the module docstring.

    ``pretrained``: ``'default'`` (the base's official download URL, e.g.
    ``https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b0.pth``),
    a checkpoint path or URL, or ``None``
    (train from scratch)."""
    overrides = swap_overrides(cfg, backbone, pretrained)
    cfg = copy.deepcopy(cfg)
    cfg.merge_from_dict(overrides, allow_list_keys=False)
    return cfg


def swap_config_text(source: str, backbone: BackboneArg = 'pvt_v2_b0',
                     pretrained: Optional[str] = 'default') -> str:
    """The text of a config file that inherits ``source`` (a path or an
    ``mmdet::`` / ``mmseg::`` name) and swaps in ``backbone``."""
    from mmengine.config import Config

    from .engine.runner import load_config
    overrides = swap_overrides(load_config(source), backbone, pretrained)
    name = backbone if isinstance(backbone, str) else _type_name(backbone)
    body = Config(overrides).pretty_text
    return (f'# {source} with the pvt_mm backbone {name}\n'
            f'# (written by tools/misc/swap_backbone.py; see '
            f'docs/use_in_your_project.md)\n'
            f'_base_ = [{source!r}]\n\n' + body)


def __getattr__(name: str):
    # pvt_mm.swap.load_config was a second config loader; the one loader,
    # which takes ``pkg::`` names too, is pvt_mm.engine.runner.load_config
    # (imported on use: it imports pvt_mm.engine, process-wide change 3).
    if name == 'load_config':
        from .engine.runner import load_config
        return load_config
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
