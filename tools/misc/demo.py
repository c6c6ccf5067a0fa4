"""``make demo``: train RetinaNet + PVTv2-B0 on generated data and print
COCO metrics, before and after training.

1. writes the demo dataset to data/demo (tools/misc/make_demo_data.py) if it is
   not there yet;
2. builds configs/demo/retinanet_pvt_v2_b0_demo.py with the same code path
   as tools/train.py (checks, registry scope, MMEngine runner);
3. evaluates the freshly initialised model, trains it from scratch (a few
   minutes on 2 CPU cores), evaluating it after every epoch;
4. draws the trained detector's predictions beside the ground truth on a
   few validation images (demo_predictions.jpg) and the training curve,
   loss and box mAP per epoch (demo_training_curve.png).

With a CUDA GPU it trains there with automatic mixed precision (fp16,
MMEngine's AmpOptimWrapper; ``--no-amp`` for fp32 on the GPU, ``--cpu`` to
train on the CPU anyway); without one, on the CPU in fp32.

Work dir: work_dirs/demo (checkpoints, logs, demo_metrics.json, the two
pictures). The same run step by step::

    python tools/misc/make_demo_data.py
    python tools/train.py configs/demo/retinanet_pvt_v2_b0_demo.py
    python tools/test.py configs/demo/retinanet_pvt_v2_b0_demo.py \\
        work_dirs/retinanet_pvt_v2_b0_demo/epoch_6.pth
    python tools/misc/infer.py configs/demo/retinanet_pvt_v2_b0_demo.py \\
        work_dirs/retinanet_pvt_v2_b0_demo/epoch_6.pth data/demo/coco/val
"""
import argparse
import json
import os
import os.path as osp
import time

# torch, MMEngine and pvt_mm are imported in main(), after --cpu has hidden
# the GPU: MMEngine picks its device once, when it is first imported.

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

CONFIG = osp.join(REPO, 'configs', 'demo', 'retinanet_pvt_v2_b0_demo.py')
SHOWN = ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'bbox_mAP_s',
         'bbox_mAP_m', 'bbox_mAP_l')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data', default='data/demo',
                        help='demo data folder (generated if missing)')
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--epochs', type=int,
                        help='training epochs (default: the config\'s)')
    parser.add_argument('--cpu', action='store_true',
                        help='train on the CPU in fp32 even if a CUDA GPU is '
                        'present (hides it: CUDA_VISIBLE_DEVICES=)')
    parser.add_argument('--amp', action=argparse.BooleanOptionalAction,
                        help='automatic mixed precision (fp16), as '
                        'tools/train.py --amp (default: on when training on '
                        'a CUDA GPU, off on the CPU; --amp without a GPU is '
                        'an error)')
    parser.add_argument(
        '--threads', type=int, default=1,
        help='torch CPU threads (default 1: the data loader works in a '
        'second process, and on a shared machine more threads than free '
        'cores make training several times slower)')
    return parser.parse_args(argv)


def coco_metrics(metrics: dict) -> dict:
    return {k.split('/')[-1]: float(v) for k, v in metrics.items()
            if k.split('/')[-1] in SHOWN}


def hide_gpu_if_asked(args) -> None:
    """``--cpu``: hide the GPUs before torch / MMEngine look for them."""
    if args.cpu:
        os.environ['CUDA_VISIBLE_DEVICES'] = ''


def demo_config(args):
    """The demo config with the command line applied; on a CUDA GPU (and
    not ``--cpu``) with AMP unless ``--no-amp``. Returns ``(cfg, device,
    amp)``."""
    import torch

    from pvt_mm.engine.runner import load_config, use_amp
    if args.cpu and args.amp:
        raise SystemExit('--amp needs the CUDA GPU that --cpu hides; drop '
                         'one of them')
    device = 'cuda' if not args.cpu and torch.cuda.is_available() else 'cpu'
    amp = (device == 'cuda') if args.amp is None else args.amp
    options = {}
    if args.data != 'data/demo':
        options['data_root'] = osp.join(args.data, 'coco') + '/'
    if args.epochs:
        options['train_cfg.max_epochs'] = args.epochs
    cfg = load_config(CONFIG, options, work_dir=args.work_dir, launcher='none')
    if amp:
        use_amp(cfg)  # a clear error without CUDA
    return cfg, device, amp


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    hide_gpu_if_asked(args)
    import torch

    from pvt_mm.engine.runner import build_runner, prepare
    from pvt_mm.data.demo_data import demo_data_ready, make_demo_data
    torch.set_num_threads(args.threads)
    os.chdir(REPO)  # the config's data paths are relative to the repo
    cfg, device, amp = demo_config(args)
    if not demo_data_ready(args.data):
        print(f'[demo] generating demo data in {args.data} ...')
        make_demo_data(args.data)
    print(f'[demo] training on {device}' + (
        ' with mixed precision (fp16 AMP)' if amp else ' in fp32') + (
        '' if args.cpu or device == 'cuda' else ' (no CUDA GPU found)'))
    epochs = cfg.train_cfg.max_epochs
    cfg.train_cfg.val_interval = 1  # mAP per epoch for the training curve
    prepare(cfg, splits=('train', 'val'))
    runner = build_runner(cfg)

    print('[demo] evaluating the untrained model ...')
    runner.model.init_weights()
    # An untrained RetinaNet scores every box ~0.01 (its prior), below the
    # test score threshold; keep all its boxes so its mAP is measured.
    head_cfg = runner.model.bbox_head.test_cfg
    score_thr, head_cfg.score_thr = head_cfg.score_thr, 0.0
    before = coco_metrics(runner.val())
    head_cfg.score_thr = score_thr
    print(f'[demo] training RetinaNet + PVTv2-B0 from scratch for {epochs} '
          f'epochs ...')
    runner.train()
    after = coco_metrics(runner.val())
    pictures = draw_pictures(runner, cfg.work_dir)

    minutes = (time.time() - start) / 60
    print(f'\n[demo] COCO box metrics on {len(runner.val_dataloader.dataset)}'
          f' validation images ({minutes:.1f} min in total):')
    print(f'  {"metric":<12} {"untrained":>10} {"trained":>10}')
    for key in SHOWN:
        print(f'  {key:<12} {before.get(key, float("nan")):>10.3f} '
              f'{after.get(key, float("nan")):>10.3f}')
    result = dict(untrained=before, trained=after, epochs=epochs,
                  minutes=round(minutes, 2), amp=amp,
                  device=str(next(runner.model.parameters()).device))
    out = osp.join(cfg.work_dir, 'demo_metrics.json')
    with open(out, 'w') as f:
        json.dump(result, f, indent=2)
    print(f'[demo] metrics written to {out}; checkpoints and logs in '
          f'{cfg.work_dir}')
    print(f'[demo] predictions beside the ground truth: {pictures[0]}')
    print(f'[demo] training curve (loss, bbox mAP per epoch): {pictures[1]}')
    return result


def draw_pictures(runner, work_dir):
    """The trained detector on a few validation images (ground truth left,
    predictions right) and the training curve; returns both paths."""
    from pvt_mm.apis.visualize import (plot_training_curve,
                                       render_predictions_with_gt)
    preds = render_predictions_with_gt(
        runner.model, runner.val_dataloader,
        osp.join(work_dir, 'demo_predictions.jpg'), num_images=4)
    curve = plot_training_curve(
        work_dir, osp.join(work_dir, 'demo_training_curve.png'),
        title='RetinaNet + PVTv2-B0 on the demo data')
    return preds, curve


if __name__ == '__main__':
    main()
