"""Run pvt_mm's end-to-end ONNX files without torch.

Imports numpy, ONNX Runtime and OpenCV only: never torch, mmcv, mmdet,
mmseg or mmengine (reading a config for :func:`model_fingerprint` uses
MMEngine's ``Config``, which needs no torch, and only when asked). It works
where pvt_mm is installed without its dependencies (``pip install
--no-deps pvt_mm`` + ``pvt_mm[runtime]``'s packages; docs/deployment.md)::

    from pvt_mm.runtime import End2EndModel, draw, read_image
    model = End2EndModel('retinanet.onnx')
    image = read_image('demo.jpg')    # or cv2.imread: H x W x 3 uint8 BGR
    dets = model(image)         # Detections: boxes, scores, labels, masks
    picture = draw(image, dets, model.classes, model.palette)
    seg = End2EndModel('sem_fpn.onnx')('demo.jpg')  # Segmentation: label_map

or ``python -m pvt_mm.runtime FILE IMAGES --out-dir DIR`` (:mod:`.cli`).
The graph's contract (inputs, outputs) is pvt_mm.deploy.end2end's.
"""
from .draw import default_palette, draw, draw_detections, draw_segmentation
from .errors import (ConfigMismatchError, ExportMismatchError, ImageError,
                     ImageTooSmallError, NotEnd2EndError, RuntimeInputError)
from .fingerprint import load_config, model_fingerprint
from .image import (list_images, load_image, read_image, rescale_size,
                    resize_image)
from .model import (End2EndModel, is_end2end, load, open_session,
                    read_metadata)
from .results import Detections, Segmentation, encode_rle

__all__ = [
    'End2EndModel', 'load', 'is_end2end', 'open_session', 'read_metadata',
    'Detections', 'Segmentation', 'encode_rle', 'draw', 'draw_detections',
    'draw_segmentation', 'default_palette', 'list_images', 'load_image',
    'read_image', 'rescale_size', 'resize_image', 'model_fingerprint',
    'load_config', 'RuntimeInputError', 'ExportMismatchError',
    'NotEnd2EndError', 'ImageError',
    'ImageTooSmallError', 'ConfigMismatchError'
]
