"""Train a detector, segmentor or classifier from a pvt_mm config.

    python tools/train.py configs/retinanet_pvt_v2_b2_coco.py
    python tools/train.py CONFIG --cfg-options data_root=/data/coco/
    python tools/train.py CONFIG --resume            # latest in the work dir
    python tools/train.py CONFIG --resume CKPT.pth   # a given checkpoint
    python tools/train.py CONFIG --compile           # torch.compile
    bash tools/dist_train.sh CONFIG 8                # 8 processes (torchrun)

Works for MMDetection, MMSegmentation and MMPretrain configs alike: the
config's ``default_scope`` picks the library. Datasets are checked before
any model is built (see pvt_mm/data/layout.py).
"""
import argparse
import os.path as osp

from pvt_mm.engine.runner import (add_common_args, build_runner,
                                  config_from_args, finish, prepare, use_amp,
                                  use_compile)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train a pvt_mm config with MMEngine.')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--resume', nargs='?', const='auto', metavar='CHECKPOINT',
        help='resume: without a value from the latest checkpoint in the work '
        'dir, or from the given checkpoint file')
    parser.add_argument('--amp', action='store_true',
                        help='automatic mixed precision (needs a GPU)')
    parser.add_argument(
        '--compile', action='store_true',
        help='torch.compile the backbone and neck for training (static '
        'shapes, validation eager; pvt_mm/engine/compile.py)')
    parser.add_argument(
        '--compile-bucket', type=int, metavar='PIXELS',
        help='with --compile, detection batches are padded to a multiple of '
        'this many pixels so that few sizes compile (default 64)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by (GPUs x batch per GPU) / '
                        'auto_scale_lr.base_batch_size')
    add_common_args(parser)
    return parser.parse_args(argv)


def apply_train_args(cfg, args) -> None:
    if args.amp:
        use_amp(cfg)
    if args.compile:
        use_compile(cfg, 64 if args.compile_bucket is None
                    else args.compile_bucket)
    elif args.compile_bucket is not None:
        raise SystemExit('--compile-bucket needs --compile')
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise SystemExit('--auto-scale-lr: the config has no '
                             'auto_scale_lr.base_batch_size')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume:
        if not osp.isfile(args.resume):
            raise SystemExit(f'--resume {args.resume}: no such checkpoint')
        cfg.resume, cfg.load_from = True, args.resume


def main(argv=None):
    args = parse_args(argv)
    cfg = config_from_args(args.config, args)
    apply_train_args(cfg, args)
    prepare(cfg, splits=('train', 'val'))
    runner = build_runner(cfg)
    runner.train()
    finish()


if __name__ == '__main__':
    main()
