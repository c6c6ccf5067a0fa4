"""Render a detector's / segmentor's predictions on images and save them.

    python tools/misc/infer.py CONFIG CHECKPOINT IMAGE_OR_FOLDER... [--out-dir DIR]
    python tools/misc/infer.py CONFIG --onnx model.onnx IMAGES...   # ONNX Runtime

Writes DIR/vis/<image> (boxes, instance masks or the segmentation overlay,
drawn by MMDetection's / MMSegmentation's visualizer) and DIR/preds/<image
name>.json (raw predictions: labels, scores, boxes, masks as RLE; or the
label map). The checkpoint must match the config exactly. With --onnx the
model exported by tools/deployment/pytorch2onnx.py runs in ONNX Runtime;
two-stage models (Mask R-CNN) also need the checkpoint for their RoI heads.
"""
import argparse

from mmengine.config import DictAction

from pvt_mm.apis import build_inferencer, run_inference


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', nargs='?',
                        help='trained weights (optional with --onnx for '
                        'single-stage detectors and segmentors)')
    parser.add_argument('images', nargs='+', help='image files or folders')
    parser.add_argument('--onnx', help='run this export with ONNX Runtime')
    parser.add_argument('--out-dir', default='outputs/infer')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='boxes drawn above this score (detection)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        default={})
    args = parser.parse_args(argv)
    # `infer.py CONFIG --onnx M IMG`: the first positional is an image
    if args.checkpoint and not args.checkpoint.endswith(('.pth', '.pt')):
        args.images.insert(0, args.checkpoint)
        args.checkpoint = None
    return args


def main(argv=None):
    args = parse_args(argv)
    inferencer = build_inferencer(args.config, args.checkpoint, onnx=args.onnx,
                                  device=args.device,
                                  cfg_options=args.cfg_options)
    written = run_inference(inferencer, args.images, args.out_dir,
                            args.score_thr)
    backend = 'ONNX Runtime' if args.onnx else 'PyTorch'
    print(f'[infer] {len(written)} image(s) with {backend}: pictures in '
          f'{args.out_dir}/vis, predictions in {args.out_dir}/preds')
    return written


if __name__ == '__main__':
    main()
