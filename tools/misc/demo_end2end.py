"""The demo detector end to end, as one picture (docs/demo_end2end.jpg):
``make demo``'s RetinaNet + PVTv2-B0, exported end to end, run on
validation images by the torch-free runtime, whose drawings are tiled.

    python tools/misc/demo_end2end.py [--num-images 8] [--out docs/demo_end2end.jpg]

It runs the commands of docs/deployment.md:

1. the checkpoint ``work_dirs/demo/epoch_6.pth``; without it, ``python
   tools/misc/demo.py`` trains it first (a few minutes on a CPU);
2. ``python tools/deployment/pytorch2onnx.py
   configs/demo/retinanet_pvt_v2_b0_demo.py work_dirs/demo/epoch_6.pth
   --out work_dirs/demo/retinanet.onnx --shape 128 128``;
3. ``python -m pvt_mm.runtime work_dirs/demo/retinanet.onnx IMAGES
   --out-dir work_dirs/demo/end2end_infer`` on the first ``--num-images``
   validation images of data/demo/coco/val;
4. tiles the runtime's pictures (``work_dirs/demo/end2end_infer/vis/``),
   each enlarged without smoothing, into one JPEG, at the quality that keeps
   it under ``--max-kb``.
"""
import argparse
import os
import os.path as osp
import subprocess
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = 'configs/demo/retinanet_pvt_v2_b0_demo.py'
WORK_DIR = 'work_dirs/demo'
VAL_DIR = 'data/demo/coco/val'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--checkpoint', default=f'{WORK_DIR}/epoch_6.pth',
                        help='trained demo weights (trained with '
                        'tools/misc/demo.py if this is the default and '
                        'missing)')
    parser.add_argument('--num-images', type=int, default=8)
    parser.add_argument('--cols', type=int, default=4)
    parser.add_argument('--zoom', type=int, default=2,
                        help='each picture enlarged this many times '
                        '(nearest neighbour)')
    parser.add_argument('--score-thr', type=float, default=0.3)
    parser.add_argument('--out', default='docs/demo_end2end.jpg')
    parser.add_argument('--max-kb', type=float, default=150)
    return parser.parse_args(argv)


def run(*cmd):
    print('[demo_end2end] $ ' + ' '.join(cmd), flush=True)
    subprocess.run([sys.executable, *cmd], cwd=REPO, check=True)


def tile(pictures, cols, zoom, gap=4):
    """The BGR ``pictures`` (one size) enlarged ``zoom`` times in a grid of
    ``cols`` columns on white."""
    import cv2
    import numpy as np
    big = [cv2.resize(p, None, fx=zoom, fy=zoom,
                      interpolation=cv2.INTER_NEAREST) for p in pictures]
    h, w = big[0].shape[:2]
    rows = -(-len(big) // cols)
    canvas = np.full((rows * h + (rows + 1) * gap,
                      cols * w + (cols + 1) * gap, 3), 255, np.uint8)
    for k, img in enumerate(big):
        r, c = divmod(k, cols)
        y, x = gap + r * (h + gap), gap + c * (w + gap)
        canvas[y:y + h, x:x + w] = img
    return canvas


def write_small_jpeg(path, img, max_kb):
    """``img`` as a JPEG of the highest quality (95 down to 40) under
    ``max_kb`` kilobytes (1000 bytes); returns the quality."""
    import cv2
    for quality in range(95, 35, -5):
        ok, buf = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY,
                                             quality])
        if ok and len(buf) <= max_kb * 1000:
            os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
            buf.tofile(path)
            return quality
    raise SystemExit(f'{path}: no JPEG quality down to 40 fits in '
                     f'{max_kb} KB; use fewer images or --zoom 1')


def main(argv=None):
    args = parse_args(argv)
    os.chdir(REPO)
    if not osp.isfile(args.checkpoint):
        if args.checkpoint != f'{WORK_DIR}/epoch_6.pth':
            raise SystemExit(f'{args.checkpoint} does not exist')
        run('tools/misc/demo.py')
    onnx = f'{WORK_DIR}/retinanet.onnx'
    run('tools/deployment/pytorch2onnx.py', CONFIG, args.checkpoint,
        '--out', onnx, '--shape', '128', '128')
    images = sorted(os.listdir(VAL_DIR))[:args.num_images]
    out_dir = f'{WORK_DIR}/end2end_infer'
    run('-m', 'pvt_mm.runtime', onnx,
        *(osp.join(VAL_DIR, i) for i in images), '--out-dir', out_dir,
        '--score-thr', str(args.score_thr))

    import cv2
    pictures = [cv2.imread(osp.join(out_dir, 'vis', i)) for i in images]
    picture = tile(pictures, args.cols, args.zoom)
    quality = write_small_jpeg(args.out, picture, args.max_kb)
    print(f'[demo_end2end] {args.out}: {len(images)} pictures of the '
          f'runtime, {picture.shape[1]}x{picture.shape[0]}, JPEG quality '
          f'{quality}, {osp.getsize(args.out) / 1000:.0f} kB')
    return args.out


if __name__ == '__main__':
    main()
