"""Pictures of the runtime's results, drawn with OpenCV on the BGR image:
boxes with ``class: score`` labels and instance masks (detection), the
label map blended in its palette colours (segmentation). The colours are
the dataset's palette (RGB, as OpenMMLab's visualizers read it); a class
without one gets the colour pvt_mm's PyTorch renderer gives it
(:func:`default_palette`)."""
from typing import List, Optional, Sequence

import numpy as np

from .errors import require
from .results import Detections, Segmentation


def default_palette(num_classes: int) -> List[tuple]:
    """RGB colours for ``num_classes`` classes (the generator and seed of
    ``pvt_mm.apis.inference.build_inferencer``)."""
    rng = np.random.RandomState(42)
    return [tuple(c) for c in
            rng.randint(0, 255, size=(num_classes, 3)).tolist()]


def _palette(palette: Optional[Sequence], num_classes: int) -> np.ndarray:
    """``(num_classes, 3)`` BGR uint8."""
    if (not isinstance(palette, (list, tuple)) or len(palette) < num_classes
            or not all(isinstance(c, (list, tuple)) and len(c) == 3
                       for c in palette)):
        palette = default_palette(num_classes)
    rgb = np.asarray([tuple(c) for c in palette[:num_classes]],
                     dtype=np.int64).reshape(-1, 3)
    return np.clip(rgb[:, ::-1], 0, 255).astype(np.uint8)


def draw_detections(image: np.ndarray, dets: Detections,
                    classes: Sequence[str] = (), palette=None,
                    score_thr: float = 0.3, mask_alpha: float = 0.5,
                    thickness: int = 2) -> np.ndarray:
    """A copy of the BGR ``image`` with the detections scoring at least
    ``score_thr``: masks blended in, boxes, ``class: score`` labels."""
    cv2 = require('cv2')
    out = image.copy()
    keep = np.flatnonzero(dets.scores >= score_thr)
    n_cls = max(len(classes), int(dets.labels.max()) + 1 if len(dets) else 1)
    colours = _palette(palette, n_cls)
    if dets.masks is not None:
        for i in keep[::-1]:
            m = dets.masks[i]
            colour = colours[int(dets.labels[i]) % len(colours)]
            out[m] = (out[m] * (1 - mask_alpha) +
                      colour * mask_alpha).astype(np.uint8)
    for i in keep[::-1]:
        label = int(dets.labels[i])
        colour = tuple(int(c) for c in colours[label % len(colours)])
        x1, y1, x2, y2 = (int(round(float(v))) for v in dets.boxes[i])
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness)
        name = classes[label] if label < len(classes) else f'class {label}'
        text = f'{name}: {round(float(dets.scores[i]) * 100, 1)}'
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX,
                                          0.4, 1)
        ty = max(y1, th + base)
        cv2.rectangle(out, (x1, ty - th - base), (x1 + tw, ty), colour, -1)
        cv2.putText(out, text, (x1, ty - base), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def draw_segmentation(image: np.ndarray, seg: Segmentation,
                      classes: Sequence[str] = (), palette=None,
                      opacity: float = 0.8) -> np.ndarray:
    """A copy of the BGR ``image`` with the label map blended in its class
    colours at ``opacity`` (MMSegmentation's visualizer's default 0.8)."""
    labels = seg.label_map
    n_cls = max(len(classes), int(labels.max()) + 1 if labels.size else 1)
    colours = _palette(palette, n_cls)
    colour_map = colours[labels % len(colours)]
    return (image * (1 - opacity) + colour_map * opacity).round().clip(
        0, 255).astype(np.uint8)


def draw(image: np.ndarray, result, classes: Sequence[str] = (),
         palette=None, score_thr: float = 0.3) -> np.ndarray:
    """:func:`draw_detections` or :func:`draw_segmentation` by the type of
    ``result``."""
    if isinstance(result, Segmentation):
        return draw_segmentation(image, result, classes, palette)
    return draw_detections(image, result, classes, palette, score_thr)


__all__ = ['default_palette', 'draw', 'draw_detections', 'draw_segmentation']
