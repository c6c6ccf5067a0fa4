"""Per-image results of an end-to-end file, and their JSON form.

The JSON is what ``tools/misc/infer.py`` writes with PyTorch
(``OUT/preds/<image name>.json``): for detection MMDetection's
``DetInferencer`` layout (``labels``, ``scores``, ``bboxes``, ``masks`` as
COCO RLE with ``counts`` a string), for segmentation pvt_mm's
(``image``, ``classes``, ``pixels_per_class``, ``sem_seg``)."""
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np


@dataclass
class Detections:
    """One image's detections, in its original pixels, best first.

    ``boxes`` ``(n, 4)`` float32 ``x1, y1, x2, y2``; ``scores`` ``(n,)``
    float32; ``labels`` ``(n,)`` int64 class indices; ``masks`` ``(n, h,
    w)`` bool at the original size for instance segmentation, else None."""
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    masks: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.scores)

    def to_json(self) -> dict:
        out = {'labels': self.labels.tolist(), 'scores': self.scores.tolist(),
               'bboxes': self.boxes.tolist()}
        if self.masks is not None:
            out['masks'] = [encode_rle(m) for m in self.masks]
        return out


@dataclass
class Segmentation:
    """One image's label map ``(h, w)`` int64 at its original size."""
    label_map: np.ndarray

    def to_json(self, image: str = '',
                classes: Sequence[str] = ()) -> dict:
        classes = list(classes)
        counts = np.bincount(self.label_map.ravel(),
                             minlength=len(classes))
        return dict(image=image, classes=classes,
                    pixels_per_class=counts.tolist(),
                    sem_seg=self.label_map.tolist())


def rle_counts(mask: np.ndarray) -> List[int]:
    """Run lengths of ``mask`` read column by column (COCO's order), the
    first run counting zeros (0 if the first pixel is set)."""
    flat = np.asarray(mask, dtype=bool).ravel(order='F')
    if flat.size == 0:
        return []
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat[0] else runs


def _compress_counts(counts: Sequence[int]) -> str:
    """COCO's compressed RLE string: each count (from the third on, minus
    the count two before) in 5-bit groups, low first, 0x20 = more groups
    follow, offset by 48 into printable ASCII."""
    out = []
    for i, c in enumerate(counts):
        x = int(c) - (int(counts[i - 2]) if i > 2 else 0)
        while True:
            group = x & 0x1f
            x >>= 5  # arithmetic: -1 stays -1
            more = (x != -1) if group & 0x10 else (x != 0)
            if more:
                group |= 0x20
            out.append(chr(group + 48))
            if not more:
                break
    return ''.join(out)


def encode_rle(mask: np.ndarray) -> dict:
    """``mask`` ``(h, w)`` as COCO compressed RLE (what
    ``pycocotools.mask.encode`` gives, ``counts`` decoded to ``str``)."""
    h, w = mask.shape
    return {'size': [int(h), int(w)],
            'counts': _compress_counts(rle_counts(mask))}


__all__ = ['Detections', 'Segmentation', 'encode_rle', 'rle_counts']
