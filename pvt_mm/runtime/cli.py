"""``python -m pvt_mm.runtime FILE IMAGES... --out-dir DIR``: run a pvt_mm
end-to-end ONNX file on images without torch, and write what
``tools/misc/infer.py`` writes: ``DIR/vis/<image>`` (the picture) and
``DIR/preds/<image name>.json`` (the predictions, and which runtime and
precision made them; for segmentation also the label map as ``<image
name>.png``). The file's metadata holds everything needed (test resize,
classes, palette): no config.

A run over many images does not die on one: an unreadable image is
reported in one line and skipped, each result is written as soon as it is
done (the prediction JSON last, under a temporary name renamed into
place), a summary ends the run, and the exit code is 1 when an image was
skipped. ``--resume`` skips the images whose prediction the same file,
backend and precision already wrote (a killed run continues where it
stopped). Errors are one line with the fix (``--debug`` for the
traceback)."""
import argparse
import json
import os
import os.path as osp
import sys
import time
from typing import List, NamedTuple, Optional, Sequence

import numpy as np

from .backends import BACKENDS, PRECISIONS
from .draw import draw
from .errors import ImageError, RuntimeInputError, require
from .image import list_images, read_image
from .model import End2EndModel
from .results import Segmentation


def providers_for(device: str) -> List[str]:
    """ONNX Runtime providers for a torch-style device name (``cpu``,
    ``cuda``, ``cuda:0``)."""
    if device.startswith('cuda'):
        return ['CUDAExecutionProvider', 'CPUExecutionProvider']
    return ['CPUExecutionProvider']


class Skipped(NamedTuple):
    image: str
    reason: str


class Progress:
    """``done/total images, N img/s`` on stderr, at most once a second
    (and at the end), for runs of more than one image."""

    def __init__(self, total: int, stream=None):
        self.total, self.done, self.start = total, 0, time.perf_counter()
        self.stream = stream or sys.stderr
        self.last = 0.0

    def step(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if self.total > 1 and (now - self.last >= 1.0
                               or self.done == self.total):
            rate = self.done / max(now - self.start, 1e-9)
            end = '\n' if self.done == self.total else ''
            self.stream.write(f'\r[pvt_mm.runtime] {self.done}/{self.total} '
                              f'images, {rate:.2f} img/s{end}')
            self.stream.flush()
            self.last = now


def _runtime_record(model: End2EndModel) -> dict:
    return dict(backend=model.choice.backend,
                precision=model.choice.precision,
                file=osp.basename(model.path), model_sha256=model.fingerprint)


def _finished(pred: str, runtime: dict) -> bool:
    """Whether ``pred`` was written by a run of the same file, backend and
    precision (what ``--resume`` skips)."""
    try:
        with open(pred) as f:
            return json.load(f).get('runtime') == runtime
    except (OSError, ValueError):
        return False


def _write_json(path: str, record: dict) -> None:
    tmp = f'{path}.tmp-{os.getpid()}'
    with open(tmp, 'w') as f:
        json.dump(record, f)
    os.replace(tmp, path)


def write_outputs(model: End2EndModel, images: Sequence[str], out_dir: str,
                  score_thr: float = 0.3, batch_size: int = 1,
                  resume: bool = False, skipped: Optional[list] = None,
                  progress: bool = False) -> List[dict]:
    """Run ``model`` on ``images`` (files / folders), write the pictures and
    predictions under ``out_dir``; return ``[{'image', 'vis', 'pred'}]``
    per image written (as ``pvt_mm.apis.run_inference``). An image that
    cannot be read is reported on stderr, appended to ``skipped`` as a
    :class:`Skipped` and left out; with ``resume``, images already done
    by the same file, backend and precision are not run again."""
    cv2 = require('cv2')
    files = list_images(images)
    vis_dir, pred_dir = osp.join(out_dir, 'vis'), osp.join(out_dir, 'preds')
    os.makedirs(vis_dir, exist_ok=True)
    os.makedirs(pred_dir, exist_ok=True)
    runtime = _runtime_record(model)
    skipped = [] if skipped is None else skipped
    written = []

    def paths(f):
        stem = osp.splitext(osp.basename(f))[0]
        return (osp.join(vis_dir, osp.basename(f)),
                osp.join(pred_dir, stem + '.json'), stem)

    if resume:
        done = [f for f in files if _finished(paths(f)[1], runtime)]
        if done:
            print(f'[pvt_mm.runtime] --resume: {len(done)} of {len(files)} '
                  f'images already done, skipped')
        done = set(done)
        files = [f for f in files if f not in done]
    meter = Progress(len(files)) if progress else None
    step = max(1, batch_size)
    for start in range(0, len(files), step):
        chunk, originals = [], []
        for f in files[start:start + step]:
            try:
                originals.append(read_image(f))
                chunk.append(f)
            except ImageError as e:
                skipped.append(Skipped(f, str(e)))
                print(f'\n[pvt_mm.runtime] skipped {f}: {e}', file=sys.stderr)
                if meter:
                    meter.step()
        if not chunk:
            continue
        results = model.predict(originals, batch_size=batch_size)
        for f, img, res in zip(chunk, originals, results):
            vis, pred, stem = paths(f)
            picture = draw(img, res, model.classes, model.palette, score_thr)
            if not cv2.imwrite(vis, picture):
                raise OSError(f'could not write {vis}')
            if isinstance(res, Segmentation):
                cv2.imwrite(osp.join(pred_dir, stem + '.png'),
                            res.label_map.astype(np.uint8))
                record = res.to_json(f, model.classes)
            else:
                record = res.to_json()
            record['runtime'] = runtime
            _write_json(pred, record)
            written.append(dict(image=f, vis=vis, pred=pred))
            if meter:
                meter.step()
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
    add_backend_args(parser)
    parser.add_argument('--threads', type=int, default=None,
                        help='intra-op threads of the runtime')
    parser.add_argument('--resume', action='store_true',
                        help='skip images this file, backend and precision '
                        'already wrote predictions for')
    parser.add_argument('--debug', action='store_true',
                        help='show the traceback of an error')
    return parser.parse_args(argv)


def add_backend_args(parser: argparse.ArgumentParser) -> None:
    """``--backend``, ``--precision`` and ``--device`` (also
    tools/misc/infer.py's, with ``--onnx``)."""
    parser.add_argument(
        '--backend', default='auto', choices=BACKENDS,
        help='auto: OpenVINO where installed, else ONNX Runtime')
    parser.add_argument(
        '--precision', default='auto', choices=PRECISIONS,
        help='auto: bf16 with OpenVINO on a bf16 CPU for model families '
        'measured within 0.5 points of fp32 (docs/deployment.md), else fp32')
    parser.add_argument('--device', default='cpu',
                        help='cpu, or cuda (ONNX Runtime\'s CUDA provider, '
                        'fp32)')


def summary(written: list, skipped: List[Skipped], model: End2EndModel,
            out_dir: str, tag: str = 'pvt_mm.runtime') -> str:
    text = (f'[{tag}] {len(written)} image(s) with '
            f'{model.choice.describe()} ({model.config}, {model.kind}): '
            f'pictures in {out_dir}/vis, predictions in {out_dir}/preds')
    return text + skipped_note(skipped)


def skipped_note(skipped: List[Skipped]) -> str:
    """``'; N skipped (unreadable): a.jpg, ...'`` (empty if none)."""
    return '' if not skipped else (
        f'; {len(skipped)} skipped (unreadable): '
        + ', '.join(osp.basename(s.image) for s in skipped[:5])
        + (', ...' if len(skipped) > 5 else ''))


def main(argv: Optional[Sequence[str]] = None,
         skipped: Optional[list] = None) -> List[dict]:
    """Run the command; return ``[{'image', 'vis', 'pred'}]`` per image
    written. Unreadable images are appended to ``skipped``; errors are
    raised (:func:`cli` turns them into one line and an exit code)."""
    args = parse_args(argv)
    model = End2EndModel(args.onnx, providers=providers_for(args.device),
                         num_threads=args.threads, backend=args.backend,
                         precision=args.precision)
    print(f'[pvt_mm.runtime] running with {model.choice.describe()}')
    skipped = [] if skipped is None else skipped
    written = write_outputs(model, args.images, args.out_dir, args.score_thr,
                            args.batch_size, resume=args.resume,
                            skipped=skipped, progress=True)
    print(summary(written, skipped, model, args.out_dir))
    return written


def exit_code(run, argv: Optional[Sequence[str]], tag: str,
              errors: tuple) -> int:
    """A command line's exit code around ``run(argv, skipped)``: 0, 1 when
    an image was skipped, 2 on one of ``errors`` (printed as one line
    ``TAG: error: ...``; with ``--debug`` in ``argv`` it is raised with its
    traceback). Also tools/misc/infer.py's."""
    skipped: List[Skipped] = []
    try:
        run(argv, skipped)
    except errors as e:
        if '--debug' in (sys.argv[1:] if argv is None else argv):
            raise
        print(f'{tag}: error: {e}', file=sys.stderr)
        return 2
    return 1 if skipped else 0


def cli(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m pvt_mm.runtime``: 0, 1 when an image was skipped, 2 on
    an error (one line with the fix; ``--debug`` shows the traceback)."""
    return exit_code(main, argv, 'pvt_mm.runtime', (
        RuntimeInputError, FileNotFoundError, ImportError, OSError))


__all__ = ['cli', 'exit_code', 'main', 'write_outputs', 'providers_for', 'add_backend_args',
           'Skipped', 'skipped_note', 'summary']
