"""Render a detector's / segmentor's predictions on images and save them.

    python tools/misc/infer.py CONFIG CHECKPOINT IMAGE_OR_FOLDER... [--out-dir DIR]
    python tools/misc/infer.py CONFIG --onnx model.onnx IMAGES...   # ONNX Runtime

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
"""
import argparse

from mmengine.config import DictAction


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', nargs='?',
                        help='trained weights (not needed with an end-to-end '
                        '--onnx file, nor with a network-only one of a '
                        'single-stage detector or a segmentor)')
    parser.add_argument('images', nargs='+', help='image files or folders')
    parser.add_argument('--onnx', help='run this export with ONNX Runtime')
    parser.add_argument('--out-dir', default='outputs/infer')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='boxes drawn above this score (detection)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--batch-size', type=int, default=1,
                        help='end-to-end files: images of the same size '
                        'run together')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        default={})
    args = parser.parse_args(argv)
    # `infer.py CONFIG --onnx M IMG`: the first positional is an image
    if args.checkpoint and not args.checkpoint.endswith(('.pth', '.pt')):
        args.images.insert(0, args.checkpoint)
        args.checkpoint = None
    return args


def run_end2end(args, session):
    """An end-to-end file through pvt_mm.runtime (no torch)."""
    from pvt_mm.runtime import End2EndModel, load_config, model_fingerprint
    from pvt_mm.runtime.cli import write_outputs
    cfg = load_config(args.config, args.cfg_options)
    model = End2EndModel(args.onnx, fingerprint=model_fingerprint(cfg, end2end=True),
                         config=args.config, session=session)
    if args.checkpoint:
        print(f'[infer] {args.onnx} is an end-to-end export: it holds the '
              f'weights; {args.checkpoint} is not used')
    return write_outputs(model, args.images, args.out_dir, args.score_thr,
                         args.batch_size)


def main(argv=None):
    args = parse_args(argv)
    if args.onnx:
        from pvt_mm.runtime import is_end2end, open_session
        from pvt_mm.runtime.cli import providers_for
        session = open_session(args.onnx, providers_for(args.device))
        if is_end2end(session):
            written = run_end2end(args, session)
            print(f'[infer] {len(written)} image(s) with ONNX Runtime '
                  f'(end-to-end, pvt_mm.runtime): pictures in '
                  f'{args.out_dir}/vis, predictions in {args.out_dir}/preds')
            return written
        del session
    from pvt_mm.apis import build_inferencer, run_inference
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
