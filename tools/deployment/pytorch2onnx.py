"""Export a detector or segmentor (backbone, neck and dense head) to ONNX
with dynamic batch, height and width.

    python tools/deployment/pytorch2onnx.py CONFIG CHECKPOINT --out model.onnx [--shape 800 1333]

docs/deployment.md lists what each model family has in the graph; run the
file with ``tools/misc/infer.py CONFIG --onnx model.onnx IMAGES`` (or
``pvt_mm.deploy.ORTModel``), which checks that it was exported from the
same config.
"""
import argparse
import os.path as osp

from mmengine.config import DictAction

from pvt_mm.cli import load_config
from pvt_mm.cli.analysis import input_shape
from pvt_mm.deploy import export_onnx, load_model


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
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        default={})
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    model = load_model(cfg, args.checkpoint)
    scope = cfg.get('default_scope')
    shape = input_shape(args.shape, scope)
    name = osp.splitext(osp.basename(args.config))[0]
    out = args.out or osp.join('work_dirs', 'onnx', name + '.onnx')
    meta = export_onnx(model, out, shape=shape, opset=args.opset,
                       checkpoint=args.checkpoint)
    print(f'[pytorch2onnx] {meta["kind"]} graph of {meta["config"]} traced '
          f'at {meta["export_shape"]} -> {out} (dynamic batch/height/width, '
          f'min side {meta["min_size"]} px)')
    return out


if __name__ == '__main__':
    main()
