"""Training with ``torch.compile`` (``tools/train.py --compile``).

Two pieces, each usable on its own from a config:

- :class:`CompileHook` (``custom_hooks=[dict(type='pvt_mm.CompileHook')]``)
  compiles the model's backbone and neck in place before training
  (``nn.Module.compile``: parameters and state-dict keys unchanged, so
  checkpoints and resuming are as without it), as one graph each
  (``fullgraph=True``: a graph break inside them is an error, not a silent
  slowdown), with static shapes. Validation and testing run eagerly
  (``torch.compiler.set_stance('force_eager')``): their images come in
  every size and would each compile anew.
- :class:`SizeBuckets`, a batch augment for MMDetection's data
  preprocessor, pads every training batch further, to the next multiple
  of ``step`` pixels in height and width, so the compiled graphs see a few
  sizes instead of one per padded image size.

Why static shapes and buckets, not ``dynamic=True``: with torch 2.13
inductor fails on, or recompiles at every size of, the channels-last
token maps around the convolutions (docs/benchmarks.md, "torch.compile
for training"). With buckets each size compiles once; how many there are
is logged as they appear, and :data:`DEFAULT_MAX_GRAPHS` bounds them.
"""
import math
from typing import List, Optional, Sequence, Tuple

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import nn

from pvt_mm.registry import HOOKS, MODELS

DEFAULT_MODULES = ('backbone', 'neck')
DEFAULT_STEP = 64
# compiled graphs per module before dynamo gives up and runs it eagerly
DEFAULT_MAX_GRAPHS = 64


@MODELS.register_module()
class SizeBuckets(nn.Module):
    """Pad a training batch to the next multiple of ``step`` in height and
    width (a batch augment of ``DetDataPreProcessor``, which has already
    padded it to the largest image and ``pad_size_divisor``).

    The padding is MMDetection's ``BatchFixedSizePad`` at that size: zeros
    for the image (after normalisation, as the preprocessor's own
    padding), ``pad_shape`` and ``batch_input_shape`` updated, instance
    masks (``pad_mask``) and semantic maps (``pad_seg``) padded alike.
    Boxes and ``img_shape`` stay, so the loss sees the same objects; only
    the zero border grows, by less than ``step`` pixels per side.
    """

    def __init__(self, step: int = DEFAULT_STEP, pad_mask: bool = False,
                 mask_pad_value: int = 0, pad_seg: bool = False,
                 seg_pad_value: int = 255, img_pad_value: float = 0):
        super().__init__()
        if not isinstance(step, int) or step < 1:
            raise ValueError(f'SizeBuckets: step must be a positive number '
                             f'of pixels, got {step!r}')
        self.step = step
        self.pad_kwargs = dict(img_pad_value=img_pad_value, pad_mask=pad_mask,
                               mask_pad_value=mask_pad_value, pad_seg=pad_seg,
                               seg_pad_value=seg_pad_value)

    def bucket(self, h: int, w: int) -> Tuple[int, int]:
        return (math.ceil(h / self.step) * self.step,
                math.ceil(w / self.step) * self.step)

    def forward(self, inputs: torch.Tensor,
                data_samples: Optional[List] = None):
        from mmdet.models.data_preprocessors import BatchFixedSizePad
        size = self.bucket(*inputs.shape[-2:])
        return BatchFixedSizePad(size, **self.pad_kwargs)(inputs,
                                                          data_samples)


def _set_recompile_limit(limit: int) -> None:
    config = torch._dynamo.config
    name = ('recompile_limit' if hasattr(config, 'recompile_limit')
            else 'cache_size_limit')
    setattr(config, name, max(getattr(config, name), limit))


def _graph_count() -> int:
    from torch._dynamo.utils import counters
    return int(counters['stats']['unique_graphs'])


def compile_modules(model: nn.Module,
                    modules: Sequence[str] = DEFAULT_MODULES,
                    **kwargs) -> List[str]:
    """``module.compile(**kwargs)`` (in place: the state-dict keys stay)
    for each attribute name in ``modules``; what was compiled, as
    ``'name (Class)'``. A name the model lacks is an error that lists the
    model's modules. Used by :class:`CompileHook` and the training-step
    benchmark (benchmarks/bench_detectors.py, impl ``ours-compiled``)."""
    compiled = []
    for name in modules:
        module = getattr(model, name, None)
        if not isinstance(module, nn.Module):
            children = ', '.join(n for n, _ in model.named_children())
            raise ValueError(
                f'CompileHook: the model ({type(model).__name__}) has no '
                f'module {name!r} to compile; its modules are: {children}. '
                f'Set CompileHook(modules=...) to some of them')
        module.compile(**{k: v for k, v in kwargs.items() if v is not None})
        compiled.append(f'{name} ({type(module).__name__})')
    return compiled


@HOOKS.register_module()
class CompileHook(Hook):
    """Compile ``modules`` of the model (``'backbone'``, ``'neck'``) for
    training with ``torch.compile``; validation and testing stay eager.

    Args:
        modules: attribute names of the modules to compile; each must
            exist (an error names the model's children otherwise).
        backend, mode, options: passed to ``torch.compile``.
        fullgraph: one graph per module; a graph break is an error.
        max_graphs: compiled sizes per module before dynamo stops
            compiling it (it then runs eagerly and this hook warns once);
            raises dynamo's ``recompile_limit`` to at least this.
    """
    def __init__(self, modules: Sequence[str] = DEFAULT_MODULES,
                 backend: str = 'inductor', mode: Optional[str] = None,
                 options: Optional[dict] = None, fullgraph: bool = True,
                 max_graphs: int = DEFAULT_MAX_GRAPHS):
        if isinstance(modules, str):
            modules = (modules, )
        self.modules = tuple(modules)
        self.kwargs = dict(backend=backend, mode=mode, options=options,
                           fullgraph=fullgraph, dynamic=False)
        if mode is not None and options is not None:
            raise ValueError('CompileHook: give mode or options, not both '
                             '(torch.compile accepts one of them)')
        self.max_graphs = max_graphs
        self._graphs = 0
        self._warned = False

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        compiled = compile_modules(model, self.modules, **self.kwargs)
        _set_recompile_limit(self.max_graphs)
        self._graphs = _graph_count()
        runner.logger.info(
            f'torch.compile ({self.kwargs["backend"]}, static shapes): '
            f'{", ".join(compiled)}. Each new padded input size compiles '
            f'once (minutes); validation and testing run eagerly.')

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        graphs = _graph_count()
        if graphs == self._graphs:
            return
        self._graphs = graphs
        runner.logger.info(f'torch.compile: compiled graphs so far: {graphs}'
                           f' (a new padded input size)')
        if graphs >= self.max_graphs * len(self.modules) and not self._warned:
            self._warned = True
            runner.logger.warning(
                f'torch.compile: {graphs} graphs compiled, the limit '
                f'(max_graphs={self.max_graphs} per module); inputs of yet '
                f'other sizes now run eagerly. Coarser size buckets '
                f'(tools/train.py --compile-bucket, SizeBuckets.step) mean '
                f'fewer sizes')

    # validation and test images come in every size: run them eagerly
    def _eager(self, *args, **kwargs) -> None:
        torch.compiler.set_stance('force_eager')

    def _compiled(self, *args, **kwargs) -> None:
        torch.compiler.set_stance('default')

    before_val_epoch = before_test_epoch = _eager
    after_val_epoch = after_test_epoch = _compiled
