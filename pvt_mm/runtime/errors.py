"""The runtime's errors: each names the problem and the fix. All are
``ValueError`` subclasses (:class:`RuntimeInputError`), but for a missing
dependency (:func:`require`'s ``ImportError``)."""
import importlib

#: the runtime's optional dependencies: module -> (what it does with it,
#: the pip package)
DEPENDENCIES = {
    'cv2': ('reads and resizes images with OpenCV', 'opencv-python-headless'),
    'onnxruntime': ('runs the file with ONNX Runtime', 'onnxruntime'),
    'openvino': ('runs the file with OpenVINO', 'openvino'),
}


def require(module: str):
    """Import one of :data:`DEPENDENCIES`, or raise an ``ImportError`` that
    says what the runtime needs it for and what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        purpose, package = DEPENDENCIES[module]
        extra = 'runtime-openvino' if module == 'openvino' else 'runtime'
        raise ImportError(
            f'pvt_mm.runtime {purpose}, which is not importable here ({e}): '
            f'pip install {package} (or pvt_mm[{extra}])') from e


class RuntimeInputError(ValueError):
    """Something the runtime was given that it cannot run."""


class ExportMismatchError(RuntimeInputError):
    """An ONNX file that was not exported by pvt_mm from this config: the
    base of :class:`NotEnd2EndError` and :class:`ConfigMismatchError`
    (torch-free; ``pvt_mm.deploy`` raises it too for its network-only
    files)."""


class NotEnd2EndError(ExportMismatchError):
    """A file that is not a pvt_mm end-to-end export (a network-only
    export, another program's ONNX file, not ONNX at all)."""


class ImageError(RuntimeInputError):
    """An image that is not an ``H x W x 3`` ``uint8`` BGR array, or a path
    that is not a readable image."""


class ImageTooSmallError(RuntimeInputError):
    """An image that, after the model's test resize, is smaller than the
    backbone's deepest stage can take."""


class ConfigMismatchError(ExportMismatchError):
    """An end-to-end file exported from another config than the caller's."""


__all__ = ['require', 'RuntimeInputError', 'ExportMismatchError', 'NotEnd2EndError',
           'ImageError', 'ImageTooSmallError', 'ConfigMismatchError']
