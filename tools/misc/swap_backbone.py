"""Write a config that puts a pvt_mm backbone into an existing
MMDetection / MMSegmentation config (by inheritance).

    python tools/misc/swap_backbone.py \\
        mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py pvt_v2_b0 \\
        -o configs/my_faster_rcnn_pvt_v2_b0.py
    python tools/misc/swap_backbone.py my_upernet.py cvt_13 --from-scratch

The written file inherits SOURCE (``_base_ = [SOURCE]``) and sets only
what :func:`pvt_mm.swap_backbone` changes: the backbone, the input
channels of what reads it, ``model.pretrained``, the normalisation and
``custom_imports``. Train it with the library's own tools/train.py or
pvt_mm's. Without ``-o`` the config is printed.
"""
import argparse

from pvt_mm.swap import swap_config_text


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('source', help='config file, or mmdet::/mmseg:: name')
    parser.add_argument('backbone', help='pvt_mm backbone base, e.g. '
                        'pvt_v2_b0, pvt_v2_b2_li, pvt_v1_small, cvt_13')
    parser.add_argument('-o', '--out', help='where to write the config')
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument('--pretrained', default='default',
                         metavar='PATH_OR_URL',
                         help='ImageNet checkpoint (default: the backbone '
                         'base\'s official download URL, fetched once into '
                         'torch hub\'s cache)')
    weights.add_argument('--from-scratch', action='store_true',
                         help='no pretrained weights (init_cfg=None)')
    return parser.parse_args(argv)


def main(argv=None) -> str:
    args = parse_args(argv)
    text = swap_config_text(args.source, args.backbone,
                            None if args.from_scratch else args.pretrained)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text)
        print(f'wrote {args.out}')
    else:
        print(text)
    return text


if __name__ == '__main__':
    main()
