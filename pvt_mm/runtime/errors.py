"""The runtime's errors: each names the problem and the fix. All are
``ValueError`` subclasses (:class:`RuntimeInputError`)."""


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


__all__ = ['RuntimeInputError', 'ExportMismatchError', 'NotEnd2EndError',
           'ImageError', 'ImageTooSmallError', 'ConfigMismatchError']
