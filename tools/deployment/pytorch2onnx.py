"""Export a detector or segmentor to ONNX with dynamic batch, height and
width.

    python tools/deployment/pytorch2onnx.py CONFIG CHECKPOINT --out model.onnx [--shape 800 1333]

By default the file is end to end (``pvt_mm.deploy.export_end2end``): its
inputs are the resized, unpadded image batch (``--input-dtype`` uint8 or
float32, BGR) and each image's original size, its outputs the final
predictions (detections after NMS, or the label map), with the
normalisation, padding, box decoding, NMS and rescaling in the graph, in
standard ONNX operators; ONNX Runtime alone runs it. ``--no-end2end``
exports the network only (backbone, neck and heads' raw outputs; the
post-processing then runs in PyTorch, ``pvt_mm.deploy.ORTModel``), also
for model families that have no end-to-end export.

docs/deployment.md lists what each model family has in the graph; run the
file with ``tools/misc/infer.py CONFIG --onnx model.onnx IMAGES``, which
checks that it was exported from the same config.
"""
import argparse
import os.path as osp

from mmengine.config import DictAction

from pvt_mm.analysis import input_shape
from pvt_mm.deploy import export_end2end, export_onnx, load_model
from pvt_mm.engine.runner import load_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', nargs='?',
                        help='trained weights (omit for random weights, e.g. '
                        'for a speed test)')
    parser.add_argument('--out', help='ONNX file (default: '
                        'work_dirs/onnx/<config name>.onnx)')
    parser.add_argument('--shape', type=int, nargs='+',
                        help='H [W] of the traced input (default 800 1333 '
                        'for detection, 512 512 for segmentation); other '
                        'sizes run through the same graph')
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument('--no-end2end', dest='end2end', action='store_false',
                        help='export the network only (raw head outputs; '
                        'post-processing in PyTorch, pvt_mm.deploy.ORTModel)')
    parser.add_argument('--input-dtype', choices=('uint8', 'float32'),
                        help='end-to-end: the image input\'s dtype '
                        '(default uint8)')
    parser.add_argument('--ort', nargs='+', choices=('fused', 'int8'),
                        default=[], metavar='VARIANT',
                        help='also write ONNX Runtime files beside --out '
                        '(pvt_mm.deploy.optimize): fused -> NAME.ort.onnx '
                        '(fused attention, ONNX Runtime\'s graph '
                        'optimizations), int8 -> NAME.int8.onnx (that with '
                        'int8 linear weights: faster, approximate); they run '
                        'in ONNX Runtime only')
    parser.add_argument('--calibrate', type=int, default=0, metavar='N',
                        help='with --ort int8: also quantize the neck\'s and '
                        'heads\' convolutions to int8, with activation ranges '
                        'from the first N training images (test pipeline); '
                        'needs the dataset and checkpoint')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        default={})
    args = parser.parse_args(argv)
    if args.input_dtype and not args.end2end:
        parser.error('--input-dtype is for end-to-end files; a --no-end2end '
                     'file takes the normalised float32 batch')
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    model = load_model(cfg, args.checkpoint)
    scope = cfg.get('default_scope')
    shape = input_shape(args.shape, scope)
    name = osp.splitext(osp.basename(args.config))[0]
    out = args.out or osp.join('work_dirs', 'onnx', name + '.onnx')
    if args.end2end:
        meta = export_end2end(model, out, shape=shape,
                              input_dtype=args.input_dtype or 'uint8',
                              opset=args.opset, checkpoint=args.checkpoint)
        print(describe_end2end(meta, out))
        write_ort_files(args, model, out, shape)
        return out
    meta = export_onnx(model, out, shape=shape, opset=args.opset,
                       checkpoint=args.checkpoint)
    print(f'[pytorch2onnx] network-only {meta["kind"]} graph of '
          f'{meta["config"]} traced at {meta["export_shape"]} -> {out} '
          f'(dynamic batch/height/width, min side {meta["min_size"]} px; '
          f'post-processing in PyTorch: pvt_mm.deploy.ORTModel)')
    write_ort_files(args, model, out, shape)
    return out


def write_ort_files(args, model, out: str, shape) -> None:
    """``--ort``: the fused / int8 files beside ``out``, exported like it."""
    if not args.ort:
        return
    from pvt_mm.deploy.optimize import (calibration_batches,
                                        calibration_feeds,
                                        export_ort_variants)
    dtype = args.input_dtype or 'uint8'
    extra = dict(input_dtype=dtype) if args.end2end else {}
    int8 = {}
    if args.calibrate:
        int8['calibration'] = calibration_feeds(
            model, calibration_batches(model.cfg, args.calibrate),
            args.end2end, dtype)
    written = export_ort_variants(model, out, variants=args.ort,
                                  end2end=args.end2end, shape=shape,
                                  opset=args.opset, int8_options=int8,
                                  checkpoint=args.checkpoint, **extra)
    for variant, path in written.items():
        print(f'[pytorch2onnx] {variant} ONNX Runtime file -> {path}')


def describe_end2end(meta: dict, out: str) -> str:
    """What an end-to-end export holds, in one message."""
    import json
    spec = json.loads(meta['input'])
    resize = spec.get('resize') or {}
    return (
        f'[pytorch2onnx] end-to-end {meta["kind"]} graph of {meta["config"]} '
        f'traced at {meta["export_shape"]} -> {out}\n'
        f'  inputs:  image (B, 3, H, W) {spec["dtype"]} '
        f'{spec["channel_order"].upper()}, resized like the test pipeline '
        f'(scale {resize.get("scale")}, keep_ratio '
        f'{resize.get("keep_ratio")}), not padded, min side '
        f'{spec["min_size"]} px; ori_shape (B, 2) int64 (height, width '
        f'before the resize)\n'
        f'  outputs: {", ".join(json.loads(meta["outputs"]))} (in original '
        f'image pixels; dynamic batch/height/width)')


if __name__ == '__main__':
    main()
