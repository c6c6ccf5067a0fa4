"""Reading and resizing images as the test pipelines do, with OpenCV only.

* :func:`read_image`: ``LoadImageFromFile`` (mmcv's ``imfrombytes`` with
  the cv2 backend and ``flag='color'``): ``cv2.imdecode(...,
  IMREAD_COLOR)``, BGR ``uint8``, EXIF orientation applied;
* :func:`rescale_size` / :func:`resize_image`: mmdet's / mmseg's
  ``Resize(scale, keep_ratio=True)`` (``mmcv.imrescale``): the largest
  size within ``scale`` (long side <= max(scale), short side <=
  min(scale)), each side ``int(side * factor + 0.5)``, then
  ``cv2.resize(..., INTER_LINEAR)``; with ``keep_ratio=False``
  (``mmcv.imresize``) exactly ``scale = (w, h)``.
"""
import os
import os.path as osp
from typing import Sequence, Tuple

import numpy as np

from .errors import ImageError, require

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def list_images(paths: Sequence[str]):
    """Image files from files and folders (a folder's images, sorted)."""
    images = []
    for p in paths:
        p = os.fspath(p)
        if osp.isdir(p):
            found = sorted(osp.join(p, f) for f in os.listdir(p)
                           if f.lower().endswith(IMAGE_SUFFIXES))
            if not found:
                raise FileNotFoundError(
                    f'no images ({", ".join(IMAGE_SUFFIXES)}) in folder {p}')
            images += found
        elif osp.isfile(p):
            images.append(p)
        else:
            raise FileNotFoundError(f'image or folder {p!r} does not exist')
    return images


def read_image(path) -> np.ndarray:
    """The image file ``path`` as an ``H x W x 3`` ``uint8`` BGR array, read
    as mmcv's ``LoadImageFromFile`` reads it."""
    path = os.fspath(path)
    if not osp.isfile(path):
        raise ImageError(f'image {path!r} does not exist (give an image file '
                         f'path or an H x W x 3 uint8 BGR array)')
    cv2 = require('cv2')
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise ImageError(f'{path!r} is not an image OpenCV can decode '
                         f'(empty, truncated or not an image format); '
                         f'convert it to JPEG or PNG')
    return img


def check_image(img, name: str = 'image') -> np.ndarray:
    """``img`` if it is an ``H x W x 3`` ``uint8`` array, else
    :class:`ImageError` naming what it is and how to convert it."""
    if not isinstance(img, np.ndarray):
        raise ImageError(f'{name} is a {type(img).__name__}: give an image '
                         f'file path or an H x W x 3 uint8 BGR numpy array')
    fixes = []
    if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        fixes.append('a grayscale image: cv2.cvtColor(img, '
                     'cv2.COLOR_GRAY2BGR)')
    elif img.ndim == 3 and img.shape[2] == 4:
        fixes.append('a 4-channel image: cv2.cvtColor(img, '
                     'cv2.COLOR_BGRA2BGR)')
    elif img.ndim != 3 or img.shape[2] != 3:
        fixes.append('one image, channels last (H x W x 3); a batch goes '
                     'in as a list of images')
    if img.dtype != np.uint8:
        fixes.append(f'dtype {img.dtype}: pixel values 0..255 as uint8, e.g. '
                     f'np.clip(img, 0, 255).astype(np.uint8) (multiply by '
                     f'255 first if they are 0..1)')
    if fixes:
        raise ImageError(f'{name} has shape {tuple(img.shape)} and dtype '
                         f'{img.dtype}; the model takes H x W x 3 uint8 BGR '
                         f'(as cv2.imread gives): ' + '; '.join(fixes))
    if min(img.shape[:2]) < 1:
        raise ImageError(f'{name} is empty: shape {tuple(img.shape)}')
    return img


def load_image(image, name: str = 'image') -> np.ndarray:
    """An image path or array as a checked ``H x W x 3`` ``uint8`` array."""
    if isinstance(image, (str, bytes, os.PathLike)):
        return read_image(image)
    return check_image(image, name)


def rescale_size(hw: Tuple[int, int], scale: Sequence[int],
                 keep_ratio: bool = True) -> Tuple[int, int]:
    """``(new_h, new_w)`` of an ``hw`` image resized by the test pipeline's
    ``Resize(scale, keep_ratio)`` (mmcv's ``rescale_size`` /
    ``imresize``; ``scale`` in mmcv's order, ``(w, h)`` or the long and
    short limits)."""
    h, w = int(hw[0]), int(hw[1])
    if not keep_ratio:
        return int(scale[1]), int(scale[0])
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(h, w), short_edge / min(h, w))
    return int(h * float(factor) + 0.5), int(w * float(factor) + 0.5)


def resize_image(img: np.ndarray, scale: Sequence[int],
                 keep_ratio: bool = True) -> np.ndarray:
    """``img`` resized as ``mmcv.imrescale(img, scale)`` (keep_ratio) or
    ``mmcv.imresize(img, scale)`` resize it: bilinear, cv2 backend."""
    cv2 = require('cv2')
    new_h, new_w = rescale_size(img.shape[:2], scale, keep_ratio)
    return cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)


__all__ = ['IMAGE_SUFFIXES', 'list_images', 'read_image', 'check_image',
           'load_image', 'rescale_size', 'resize_image']
