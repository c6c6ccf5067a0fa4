"""Check a config's datasets before training: files where the config says,
and contents that fit it (classes against the annotation file's
categories, every head's num_classes, images left after filter_cfg,
missing images, segmentation label values). tools/train.py and
tools/test.py run the same checks at start (pvt_mm/data/contents.py).

    python tools/misc/check_dataset.py CONFIG [--splits train val test]
        [--cfg-options data_root=/data/mine/ ...]

Prints what it found and exits 0, or prints the problem and its fix and
exits 1.
"""
import argparse
import sys
import time

from mmengine.config import DictAction

from pvt_mm.data import (DatasetContentError, DatasetLayoutError,
                         check_dataset_contents, check_dataset_layout)
from pvt_mm.engine.runner import init_scope, load_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='config file (or pkg::name)')
    parser.add_argument('--splits', nargs='+', default=['train', 'val',
                                                         'test'],
                        choices=['train', 'val', 'test'])
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        default={}, help='override config settings, e.g. '
                        'data_root=/data/mine/')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    cfg = load_config(args.config, args.cfg_options)
    init_scope(cfg)
    try:
        check_dataset_layout(cfg, args.splits)
        notes = check_dataset_contents(cfg, args.splits)
    except (DatasetLayoutError, DatasetContentError) as e:
        print(f'check_dataset: PROBLEM\n{e}', file=sys.stderr)
        return 1
    for note in notes:
        print(note)
    print(f'check_dataset: OK ({", ".join(args.splits)}; '
          f'{time.perf_counter() - start:.1f} s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
