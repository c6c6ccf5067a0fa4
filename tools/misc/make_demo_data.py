"""Generate the small, deterministic demo dataset used by ``make demo``, the
demo configs (``configs/demo/``) and the end-to-end tests
(:mod:`pvt_mm.data.demo_data` describes the layouts).

Usage: python tools/misc/make_demo_data.py [--out data/demo] [--num-train 240]
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
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    make_demo_data(args.out, args.num_train, args.num_val, args.size,
                   seed=args.seed)
    print(f'demo data written to {args.out}')


if __name__ == '__main__':
    main()
