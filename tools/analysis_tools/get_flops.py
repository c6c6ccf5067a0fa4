"""Parameters and FLOPs of a config's model (or its backbone), attention included.

Fused attention is counted (see :mod:`pvt_mm.analysis`); FLOPs are
counted the way the PVT/CvT papers (and fvcore/MMEngine) count them: one
multiply-accumulate = one FLOP.

Examples::

    python tools/analysis_tools/get_flops.py configs/retinanet_pvt_v2_b0_coco.py
    python tools/analysis_tools/get_flops.py configs/retinanet_pvt_v2_b0_coco.py \\
        --backbone-only --shape 800 1333 --show-table
"""
import argparse
import sys

import torch

from pvt_mm.analysis import (TensorForward, build_model, fake_batch,
                             flop_analyzer, input_shape)
from pvt_mm.engine.runner import load_config


def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('config', help='config file')
    p.add_argument('--shape', type=int, nargs='+', default=None,
                   help='input H [W] (default: 224 for mmpretrain, else '
                        '800 1333 for mmdet and 512 512 for mmseg)')
    p.add_argument('--backbone-only', action='store_true',
                   help='count model.backbone alone')
    p.add_argument('--show-table', action='store_true',
                   help='per-module table of params and FLOPs')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config settings, key=value')
    args = p.parse_args(argv)
    if args.shape is not None and len(args.shape) not in (1, 2):
        p.error('--shape takes H or H W')
    return args


def main(argv=None) -> int:
    from mmengine.analysis import parameter_count
    from mmengine.analysis.print_helper import (_format_size,
                                                complexity_stats_table)

    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    model, scope = build_model(cfg)
    shape = input_shape(args.shape, scope)
    if args.backbone_only:
        if not hasattr(model, 'backbone'):
            raise SystemExit(f'{type(model).__name__} has no .backbone; drop '
                             f'--backbone-only')
        target = model.backbone
        inputs = (torch.randn(1, 3, *shape), )
    else:
        data = fake_batch(model, scope, shape)
        target = TensorForward(model, data['data_samples'])
        inputs = (data['inputs'], )
        shape = tuple(inputs[0].shape[-2:])  # after the preprocessor's padding
    with torch.no_grad():
        analyzer = flop_analyzer(target, inputs)
        total = analyzer.total()
        attention = analyzer.by_operator().get(
            'scaled_dot_product_attention', 0)
    params = parameter_count(target)['']
    what = 'backbone' if args.backbone_only else 'model'
    print(f'{what} of {args.config}, input 1x3x{shape[0]}x{shape[1]}')
    print(f'Params: {_format_size(params)} ({params:,})')
    print(f'FLOPs:  {_format_size(total)} ({total:,}; multiply-accumulates, '
          f'as the papers count them)')
    print(f'  of which fused attention (q@k^T, attn@v): {_format_size(attention)}'
          f' ({100 * attention / max(total, 1):.1f}%)')
    if args.show_table:
        print(complexity_stats_table(flops=analyzer, show_param_shapes=False))
    return 0


if __name__ == '__main__':
    sys.exit(main())
