"""``python -m pvt_mm.runtime FILE IMAGES... --out-dir DIR``: run a pvt_mm
end-to-end ONNX file on images without torch, and write what
``tools/misc/infer.py`` writes: ``DIR/vis/<image>`` (the picture) and
``DIR/preds/<image name>.json`` (the predictions; for segmentation also the
label map as ``<image name>.png``). The file's metadata holds everything
needed (test resize, classes, palette): no config."""
import argparse
import json
import os
import os.path as osp
from typing import List, Optional, Sequence

import numpy as np

from .draw import draw
from .errors import require
from .image import list_images, read_image
from .model import End2EndModel
from .results import Segmentation


def providers_for(device: str) -> List[str]:
    """ONNX Runtime providers for a torch-style device name (``cpu``,
    ``cuda``, ``cuda:0``)."""
    if device.startswith('cuda'):
        return ['CUDAExecutionProvider', 'CPUExecutionProvider']
    return ['CPUExecutionProvider']


def write_outputs(model: End2EndModel, images: Sequence[str], out_dir: str,
                  score_thr: float = 0.3,
                  batch_size: int = 1) -> List[dict]:
    """Run ``model`` on ``images`` (files / folders), write the pictures and
    predictions under ``out_dir``; return ``[{'image', 'vis', 'pred'}]``
    per image (as ``pvt_mm.apis.run_inference``)."""
    cv2 = require('cv2')
    files = list_images(images)
    vis_dir, pred_dir = osp.join(out_dir, 'vis'), osp.join(out_dir, 'preds')
    os.makedirs(vis_dir, exist_ok=True)
    os.makedirs(pred_dir, exist_ok=True)
    written = []
    for start in range(0, len(files), max(1, batch_size)):
        chunk = files[start:start + max(1, batch_size)]
        originals = [read_image(f) for f in chunk]
        results = model.predict(originals, batch_size=batch_size)
        for f, img, res in zip(chunk, originals, results):
            stem = osp.splitext(osp.basename(f))[0]
            vis = osp.join(vis_dir, osp.basename(f))
            pred = osp.join(pred_dir, stem + '.json')
            picture = draw(img, res, model.classes, model.palette, score_thr)
            if not cv2.imwrite(vis, picture):
                raise OSError(f'could not write {vis}')
            if isinstance(res, Segmentation):
                cv2.imwrite(osp.join(pred_dir, stem + '.png'),
                            res.label_map.astype(np.uint8))
                record = res.to_json(f, model.classes)
            else:
                record = res.to_json()
            with open(pred, 'w') as fh:
                json.dump(record, fh)
            written.append(dict(image=f, vis=vis, pred=pred))
    return written


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m pvt_mm.runtime', description=__doc__.split('\n\n')[0])
    parser.add_argument('onnx', help='end-to-end ONNX file '
                        '(tools/deployment/pytorch2onnx.py)')
    parser.add_argument('images', nargs='+', help='image files or folders')
    parser.add_argument('--out-dir', default='outputs/infer')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='boxes drawn above this score (detection)')
    parser.add_argument('--batch-size', type=int, default=1,
                        help='images of the same size run together')
    parser.add_argument('--device', default='cpu',
                        help='cpu or cuda (ONNX Runtime execution provider)')
    parser.add_argument('--threads', type=int, default=None,
                        help="ONNX Runtime's intra-op threads")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> List[dict]:
    args = parse_args(argv)
    model = End2EndModel(args.onnx, providers=providers_for(args.device),
                         num_threads=args.threads)
    written = write_outputs(model, args.images, args.out_dir, args.score_thr,
                            args.batch_size)
    print(f'[pvt_mm.runtime] {len(written)} image(s) with ONNX Runtime '
          f'({model.config}, {model.kind}): pictures in {args.out_dir}/vis, '
          f'predictions in {args.out_dir}/preds')
    return written


__all__ = ['main', 'write_outputs', 'providers_for']
