"""Evaluate a checkpoint of a pvt_mm config on its test set.

    python tools/test.py configs/retinanet_pvt_v2_b2_coco.py CKPT.pth
    python tools/test.py CONFIG https://.../CKPT.pth  # fetched once (cached)
    python tools/test.py CONFIG CKPT --cfg-options data_root=/data/coco/
    python tools/test.py CONFIG CKPT --tta     # multi-scale + flip test
    python tools/test.py CONFIG CKPT --amp     # fp16 on a GPU, bf16 on a CPU that has it
    bash tools/dist_test.sh CONFIG CKPT 8

Prints the metrics and writes them, with the config and checkpoint, to
``<work dir>/metrics.json`` (``--metrics-out`` to change), which
``tools/analysis_tools/paper_table.py`` compares with the paper.
"""
import argparse
import json
import os
import os.path as osp

from pvt_mm.engine.runner import (add_common_args, build_runner,
                                  config_from_args, finish, prepare,
                                  use_test_time_aug)

#: Training-only settings; MMEngine builds a test-only runner without them.
TRAIN_KEYS = ('train_dataloader', 'train_cfg', 'optim_wrapper',
              'param_scheduler', 'val_dataloader', 'val_cfg', 'val_evaluator')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Test a pvt_mm config\'s checkpoint with MMEngine.')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file or URL (a URL is '
                        'downloaded once into torch hub\'s cache)')
    parser.add_argument('--metrics-out', help='JSON file for the metrics '
                        '(default: <work dir>/metrics.json)')
    parser.add_argument('--out', help='also dump the raw predictions to '
                        'this .pkl file')
    parser.add_argument('--tta', action='store_true', help='test-time '
                        'augmentation: the config\'s tta_pipeline and '
                        'tta_model (e.g. multi-scale + flip)')
    parser.add_argument(
        '--amp', action='store_true', help='mixed precision: fp16 autocast '
        'on a GPU (MMEngine\'s TestLoop fp16); on a CPU with native bf16 '
        'the network in bf16 and the post-processing in fp32 '
        '(pvt_mm/engine/cpu_bf16.py)')
    add_common_args(parser)
    return parser.parse_args(argv)


def write_metrics(path: str, config: str, checkpoint: str, metrics,
                  tta: bool = False) -> None:
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(dict(config=config, checkpoint=checkpoint, tta=tta,
                       metrics={k: float(v) for k, v in metrics.items()}),
                  f, indent=2)


def main(argv=None):
    args = parse_args(argv)
    if '://' not in args.checkpoint and not osp.isfile(args.checkpoint):
        raise SystemExit(f'checkpoint {args.checkpoint!r} does not exist '
                         f'(give a file or a URL)')
    cfg = config_from_args(args.config, args)
    for key in TRAIN_KEYS:
        cfg[key] = None
    cfg.load_from = args.checkpoint
    if args.out:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise SystemExit('--out must be a .pkl or .pickle file')
        dump = dict(type='DumpResults', out_file_path=args.out)
        evaluator = cfg.test_evaluator
        cfg.test_evaluator = (list(evaluator) if isinstance(evaluator, list)
                              else [evaluator]) + [dump]
    if args.tta:
        use_test_time_aug(cfg)
    cpu_bf16 = False
    if args.amp:
        import torch
        if torch.cuda.is_available():
            cfg.test_cfg = dict(cfg.get('test_cfg') or {}, fp16=True)
        else:
            from pvt_mm.runtime.backends import cpu_has_bf16
            if not cpu_has_bf16():
                raise SystemExit(
                    '--amp without a GPU runs the network in bf16, and this '
                    'CPU has no native bf16 (neither AVX512-BF16 nor AMX); '
                    'drop --amp to test in fp32')
            cpu_bf16 = True
    prepare(cfg, splits=('test', ))
    runner = build_runner(cfg)
    if cpu_bf16:
        from pvt_mm.engine.cpu_bf16 import enable_cpu_bf16
        parts = enable_cpu_bf16(runner.model)
        print(f'--amp on the CPU: bf16 autocast for {", ".join(parts)}; '
              f'post-processing in fp32')
    metrics = runner.test()
    if not metrics:
        print('WARNING: the evaluator returned no metrics (for detection: '
              'no box scored above model.test_cfg.score_thr)')
    if runner.rank == 0:
        out = args.metrics_out or osp.join(cfg.work_dir, 'metrics.json')
        write_metrics(out, args.config, args.checkpoint, metrics,
                      tta=args.tta)
        print(f'metrics written to {out}')
    finish()


if __name__ == '__main__':
    main()
