"""Render a detector's / segmentor's predictions on images and save them.

    python tools/misc/infer.py CONFIG CHECKPOINT IMAGE_OR_FOLDER... [--out-dir DIR]
    python tools/misc/infer.py CONFIG --onnx model.onnx IMAGES...   # ONNX Runtime / OpenVINO
    python tools/misc/infer.py CONFIG CHECKPOINT IMAGES... --amp    # bf16 on the CPU

Writes DIR/vis/<image> (boxes, instance masks or the segmentation overlay)
and DIR/preds/<image name>.json (raw predictions: labels, scores, boxes,
masks as RLE; or the label map, also as <image name>.png). The checkpoint
must match the config exactly.

With --onnx and an end-to-end file (tools/deployment/pytorch2onnx.py's
default) the file runs in pvt_mm.runtime: ONNX Runtime, numpy and OpenCV,
no torch, mmcv, mmdet or mmseg (the config is read with MMEngine's Config,
which needs no torch, to check that the file was exported from it); the
pictures are drawn with OpenCV. A network-only export (--no-end2end) runs
in ORTModel with the post-processing in PyTorch, pictures by MMDetection's /
MMSegmentation's visualizers; two-stage models (Mask R-CNN) then also need
the checkpoint for their RoI heads.

--backend / --precision pick the runtime of an end-to-end file
(pvt_mm.runtime.backends: OpenVINO where installed, bf16 where measured
and available); --amp runs the PyTorch network in bf16 on a CPU that has
it (pvt_mm/engine/cpu_bf16.py). Over a folder, an unreadable image is
reported in one line and skipped, each result is written as it is done,
--resume skips images already written, and the exit code is 1 when an
image was skipped.
"""
import argparse
import json
import os.path as osp
import sys

from mmengine.config import DictAction

from pvt_mm.runtime.cli import (Skipped, add_backend_args, exit_code,
                                skipped_note, summary, write_outputs)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', nargs='?',
                        help='trained weights (not needed with an end-to-end '
                        '--onnx file, nor with a network-only one of a '
                        'single-stage detector or a segmentor)')
    parser.add_argument('images', nargs='+', help='image files or folders')
    parser.add_argument('--onnx', help='run this export with ONNX Runtime '
                        'or OpenVINO (--backend)')
    parser.add_argument('--out-dir', default='outputs/infer')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='boxes drawn above this score (detection)')
    add_backend_args(parser)
    parser.add_argument('--amp', action='store_true',
                        help='PyTorch: the network in bf16 on a CPU with '
                        'bf16, the post-processing in fp32')
    parser.add_argument('--batch-size', type=int, default=1,
                        help='end-to-end files: images of the same size '
                        'run together')
    parser.add_argument('--resume', action='store_true',
                        help='skip images whose predictions are already in '
                        'OUT_DIR/preds')
    parser.add_argument('--debug', action='store_true',
                        help='show the traceback of an error')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        default={})
    args = parser.parse_args(argv)
    # `infer.py CONFIG --onnx M IMG`: the first positional is an image
    if args.checkpoint and not args.checkpoint.endswith(('.pth', '.pt')):
        args.images.insert(0, args.checkpoint)
        args.checkpoint = None
    return args


def run_end2end(args, skipped):
    """An end-to-end file through pvt_mm.runtime (no torch)."""
    from pvt_mm.runtime import End2EndModel, load_config, model_fingerprint
    from pvt_mm.runtime.cli import providers_for
    if args.amp:
        raise SystemExit('--amp is for the PyTorch model; an end-to-end '
                         'file takes --precision bf16 (OpenVINO)')
    cfg = load_config(args.config, args.cfg_options)
    model = End2EndModel(args.onnx,
                         fingerprint=model_fingerprint(cfg, end2end=True),
                         config=args.config,
                         providers=providers_for(args.device),
                         backend=args.backend, precision=args.precision)
    print(f'[infer] running with {model.choice.describe()}')
    if args.checkpoint:
        print(f'[infer] {args.onnx} is an end-to-end export: it holds the '
              f'weights; {args.checkpoint} is not used')
    written = write_outputs(model, args.images, args.out_dir, args.score_thr,
                            args.batch_size, resume=args.resume,
                            skipped=skipped, progress=True)
    print(summary(written, skipped, model, args.out_dir, tag='infer'))
    return written


def readable(files, skipped):
    """The files OpenCV can decode (as the test pipeline reads them); the
    others reported in one line each and added to ``skipped``."""
    from pvt_mm.runtime import ImageError, read_image
    ok = []
    for f in files:
        try:
            read_image(f)
            ok.append(f)
        except ImageError as e:
            skipped.append(Skipped(f, str(e)))
            print(f'[infer] skipped {f}: {e}', file=sys.stderr)
    return ok


def run_pytorch(args, skipped):
    """The config's model in PyTorch (or a network-only export in ONNX
    Runtime), one image at a time, through MMDetection's / MMSegmentation's
    inferencers."""
    from pvt_mm.apis import build_inferencer, run_inference
    from pvt_mm.runtime import list_images
    if args.backend == 'openvino' or args.precision == 'bf16':
        raise SystemExit('--backend openvino and --precision bf16 run an '
                         'end-to-end export (--onnx FILE); for bf16 in '
                         'PyTorch use --amp')
    inferencer = build_inferencer(args.config, args.checkpoint, onnx=args.onnx,
                                  device=args.device,
                                  cfg_options=args.cfg_options)
    precision = 'fp32'
    if args.amp:
        if args.onnx:
            raise SystemExit('--amp runs the PyTorch model in bf16; it does '
                             'not apply to --onnx')
        if args.device.startswith('cuda'):
            raise SystemExit('--amp here is bf16 on the CPU; on a GPU use '
                             'tools/test.py --amp')
        from pvt_mm.engine.cpu_bf16 import enable_cpu_bf16
        enable_cpu_bf16(inferencer.model)
        precision = 'bf16'
    files = list_images(args.images)
    pred_dir = osp.join(args.out_dir, 'preds')
    if args.resume:
        done = [f for f in files if osp.isfile(osp.join(
            pred_dir, osp.splitext(osp.basename(f))[0] + '.json'))]
        if done:
            print(f'[infer] --resume: {len(done)} of {len(files)} images '
                  f'already done, skipped')
        done = set(done)
        files = [f for f in files if f not in done]
    backend = 'onnxruntime' if args.onnx else 'pytorch'
    record = dict(backend=backend, precision=precision)
    written = []
    for f in readable(files, skipped):
        for item in run_inference(inferencer, [f], args.out_dir,
                                  args.score_thr):
            with open(item['pred']) as fh:
                pred = json.load(fh)
            pred['runtime'] = record
            with open(item['pred'], 'w') as fh:
                json.dump(pred, fh)
            written.append(item)
    names = {'pytorch': 'PyTorch', 'onnxruntime': 'ONNX Runtime'}
    print(f'[infer] {len(written)} image(s) with {names[backend]} '
          f'{precision}: pictures in {args.out_dir}/vis, predictions in '
          f'{args.out_dir}/preds' + skipped_note(skipped))
    return written


def main(argv=None, skipped=None):
    """Run the tool; return ``[{'image', 'vis', 'pred'}]`` per image
    written. Unreadable images are appended to ``skipped``; errors are
    raised (:func:`cli` turns them into one line and an exit code)."""
    args = parse_args(argv)
    skipped = [] if skipped is None else skipped
    if args.onnx:
        from pvt_mm.runtime.model import NetworkOnlyError
        try:
            return run_end2end(args, skipped)
        except NetworkOnlyError:
            pass  # its post-processing runs in PyTorch
    return run_pytorch(args, skipped)


def cli(argv=None) -> int:
    """The command line: 0, 1 when an image was skipped, 2 on an error
    (one line with the fix; ``--debug`` raises it with its traceback)."""
    return exit_code(main, argv, 'infer.py',
                     (ValueError, FileNotFoundError, ImportError, OSError))


if __name__ == '__main__':
    code = cli()
    if code:  # 0 returns: runpy callers go on
        sys.exit(code)
