"""Generate the small, deterministic demo dataset used by ``make demo``, the
demo configs (``configs/demo/``) and the end-to-end tests
(:mod:`pvt_mm.data.demo_data` describes the layouts).

Usage: python tools/misc/make_demo_data.py [--out data/demo] [--num-train 240]
           [--classes NAME,NAME,NAME | --classes coco] [--coco2017]
"""
import argparse

from pvt_mm.data.demo_data import make_demo_data


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default='data/demo',
                        help='output folder (default: data/demo)')
    parser.add_argument('--num-train', type=int, default=240)
    parser.add_argument('--num-val', type=int, default=60)
    parser.add_argument('--size', type=int, default=128,
                        help='side of the detection/segmentation images')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--classes', help='names of the three shape classes, comma-separated '
        '(default: rectangle,ellipse,triangle), or "coco": the json lists '
        'COCO\'s 80 categories and the shapes are the first three')
    parser.add_argument(
        '--coco2017', action='store_true', help='name the COCO folders and '
        'annotation files as COCO 2017 (train2017/, '
        'instances_train2017.json, ...), for the COCO configs as they are')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    classes = args.classes
    if classes and classes != 'coco':
        classes = [c.strip() for c in classes.split(',')]
    try:
        make_demo_data(args.out, args.num_train, args.num_val, args.size,
                       seed=args.seed, classes=classes,
                       coco2017=args.coco2017)
    except ValueError as e:
        raise SystemExit(f'--classes: {e}')
    print(f'demo data written to {args.out}')


if __name__ == '__main__':
    main()
