"""Convert a published PVTv1 / PVTv2 / CvT checkpoint to pvt_mm's layout.

Backbone checkpoints (official PVT/CvT classification, timm, HF
transformers, mmdet 3.x built-in PVT, pvt_mm) are written as
``{'state_dict': <our keys>, 'meta': ...}``. Whole-model checkpoints from
the official PVT repository's detection (mmdet 2.x) and segmentation
(mmseg 0.x) code keep every non-backbone key unchanged (FPN, RetinaNet, GFL,
Mask R-CNN and Semantic-FPN keys are the same in mmdet 3.x / mmseg 1.x) and
get the ``backbone.`` part converted (without the class-token leftovers a
dense backbone has no place for), so the result loads strictly into an
mmdet 3.x / mmseg 1.x model with ``load_from``.

    python tools/model_converters/convert_checkpoint.py pvt_v2_b2.pth pvt_v2_b2_mm.pth
    python tools/model_converters/convert_checkpoint.py retinanet_pvt_v2_b2.pth out.pth --family PVTv2
    python tools/model_converters/convert_checkpoint.py old_pickle.pth out.pth --trust-pickle
"""
import argparse
import os
import os.path as osp
import re
import sys
from collections import OrderedDict
from typing import Optional

import torch

from pvt_mm.models import CvT, PVTv1, PVTv2
from pvt_mm.weights import (CheckpointError, convert_state_dict,
                            find_state_dict, load_file, unwrap)

BACKBONES = {cls.family: cls for cls in (PVTv1, PVTv2, CvT)}
FAMILIES = sorted(BACKBONES)
BACKBONE = 'backbone.'


def convert(obj, family: Optional[str] = None, source: str = 'checkpoint'):
    """Return ``(format, state_dict, is_whole_model)`` for a loaded checkpoint."""
    sd = find_state_dict(obj)
    under = [k for k in sd if k.startswith(BACKBONE)]
    if under and len(under) < len(sd):  # detector / segmentor
        fmt, backbone = convert_state_dict(
            OrderedDict((k[len(BACKBONE):], sd[k]) for k in under), family,
            source)
        # A dense backbone has no class token / classifier: drop such keys
        # (e.g. the class slot of the official PVTv1 pos_embed4) so that the
        # result loads strictly.
        leftovers = BACKBONES[fmt.family].leftover_patterns
        out = OrderedDict((BACKBONE + k, v) for k, v in backbone.items()
                          if not any(re.search(p, k) for p in leftovers))
        out.update((k, v) for k, v in sd.items() if not k.startswith(BACKBONE))
        return fmt, out, True
    fmt, out = convert_state_dict(unwrap(sd), family, source)
    return fmt, OrderedDict(out), False


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('src', help='checkpoint to convert')
    p.add_argument('dst', help='where to write the converted checkpoint')
    p.add_argument('--family', choices=FAMILIES,
                   help='fail unless the checkpoint is of this family')
    p.add_argument('--trust-pickle', action='store_true',
                   help='load SRC with full unpickling (can run code: only '
                        'for files from a source you trust) when a '
                        'weights_only load refuses it; only tensors are '
                        'written to DST')
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if osp.abspath(args.src) == osp.abspath(args.dst):
        raise SystemExit('convert_checkpoint: DST must differ from SRC')
    try:
        obj = load_file(args.src, trust_pickle=args.trust_pickle)
        fmt, sd, whole = convert(obj, args.family, args.src)
    except CheckpointError as e:
        print(f'convert_checkpoint: {e}', file=sys.stderr)
        return 1
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    meta = dict(converted_from=osp.basename(args.src), family=fmt.family,
                source_format=fmt.name, whole_model=whole)
    torch.save(dict(state_dict=sd, meta=meta), args.dst)
    kept = sum(not k.startswith(BACKBONE) for k in sd) if whole else 0
    print(f'{args.src}: {fmt.family} {fmt.name} -> {args.dst} '
          f'({len(sd)} tensors' +
          (f'; backbone converted under {BACKBONE!r}, {kept} neck/head '
           f'tensors kept unchanged' if whole else '') + ')')
    return 0


if __name__ == '__main__':
    sys.exit(main())
