"""The checks of a backbone's arguments and inputs, and their errors: each
names the problem and the fix (docs/backbones.md). Used by
:class:`pvt_mm.models.base.PyramidBackbone`; nothing here builds a layer."""
from typing import Dict, Sequence, Tuple, Union

import torch

# Arguments other OpenMMLab backbones take that mean nothing here, with what
# to do instead. Passing any of them is an error, never silently ignored.
KWARG_HINTS = {
    'depth': "ResNet's depth; choose a variant with arch=...",
    'pretrained': "use init_cfg=dict(type='Pretrained', checkpoint=PATH). "
                  "Not set by you? MMSegmentation's EncoderDecoder copies "
                  "the segmentor's model.pretrained (which a base config "
                  "sets for its own backbone, e.g. a ResNet) into the "
                  "backbone: set model.pretrained=None in your config",
    'convert_weights': 'official/timm/HF/mmdet checkpoints are detected '
                       'and converted automatically',
    'style': "ResNet's pytorch/caffe style has no meaning for transformers",
    'num_stages': 'the number of stages is set by arch',
    'strides': 'strides are set by arch',
    'dilations': 'transformer stages have no dilation',
    'norm_cfg': 'use norm_eps / embed_norm_eps',
}
for _name in ('deep_stem', 'stem_channels', 'base_channels', 'avg_down',
              'contract_dilation', 'stage_with_dcn', 'dcn', 'plugins',
              'zero_init_residual', 'num_layers', 'embed_dims'):
    KWARG_HINTS.setdefault(_name, 'not an argument of this backbone; '
                                  'set hyper-parameters through arch')

OUT_TYPES = ('featmap', 'cls_token', 'avg_featmap')


def check_rates(rate) -> None:
    values = rate if isinstance(rate, (list, tuple)) else [rate]
    for r in values:
        if isinstance(r, bool) or not isinstance(r, (int, float)) or \
                not 0. <= r < 1.:
            raise ValueError(f'drop_path_rate must be a number in [0, 1) or '
                             f'a list of such numbers (one per stage), got '
                             f'{rate!r}')


def reject_unknown_kwargs(cls_name: str, kwargs: dict) -> None:
    """Raise a ``TypeError`` naming every unknown argument and its fix."""
    if not kwargs:
        return
    lines = [f'  {k}: {KWARG_HINTS.get(k, "unknown argument")}' for k in kwargs]
    raise TypeError(f'{cls_name} got unexpected argument(s) '
                    f'{", ".join(sorted(kwargs))}:\n' + '\n'.join(lines))


def check_common_args(in_channels, out_type, drop_path_rate,
                      recompute_ffn) -> None:
    """The arguments every family shares."""
    if not (isinstance(in_channels, int) and in_channels > 0):
        raise ValueError(f'in_channels must be a positive int, got '
                         f'{in_channels!r}')
    if out_type not in OUT_TYPES:
        raise ValueError(f'out_type must be one of {OUT_TYPES}, got '
                         f'{out_type!r}')
    check_rates(drop_path_rate)
    if recompute_ffn not in (None, True, False):
        raise ValueError(f'recompute_ffn must be None (the device\'s '
                         f'default), True or False, got {recompute_ffn!r}')


def resolve_arch(cls_name: str, arch: Union[str, dict],
                 settings: Dict[str, dict], keys: Tuple[str, ...],
                 optional_keys: Tuple[str, ...]) -> dict:
    """The hyper-parameters of ``arch``: a name in ``settings`` or a dict
    with every one of ``keys`` (and maybe ``optional_keys``), per-stage
    entries of one length."""
    if isinstance(arch, str):
        key = arch.lower().replace('-', '_')
        if key not in settings:
            raise ValueError(
                f'{cls_name}: unknown arch {arch!r}. Valid: '
                f'{", ".join(repr(a) for a in settings)}, or a '
                f'dict with keys {", ".join(keys)}.')
        return dict(settings[key])
    if isinstance(arch, dict):
        missing = [k for k in keys if k not in arch]
        unknown = [k for k in arch if k not in keys + optional_keys]
        if missing or unknown:
            raise ValueError(
                f'{cls_name}: custom arch dict is missing {missing} / has '
                f'unknown keys {unknown}; it needs {list(keys)} (optional: '
                f'{list(optional_keys)})')
        lengths = {k: len(arch[k]) for k in keys
                   if isinstance(arch[k], (list, tuple))}
        if len(set(lengths.values())) > 1:
            raise ValueError(f'{cls_name}: per-stage entries of the arch '
                             f'dict differ in length: {lengths}')
        return dict(arch)
    raise TypeError(f'{cls_name}: arch must be a str or dict, got '
                    f'{type(arch).__name__}')


def resolve_out_indices(cls_name: str,
                        out_indices: Union[None, int, Sequence[int]],
                        num_outputs: int, num_stages: int, out_type: str,
                        frozen_stages: int) -> Tuple[int, ...]:
    """``out_indices`` as a sorted tuple of non-negative indices, checked
    against the model's outputs (``None``: every output for
    ``'featmap'``, the last stage for the pooled outputs); and
    ``frozen_stages`` against its stages."""
    if out_indices is None:
        out_indices = (tuple(range(num_outputs)) if out_type == 'featmap'
                       else (num_stages - 1, ))
    if isinstance(out_indices, int):
        out_indices = (out_indices, )
    out_indices = tuple(out_indices)
    bad = [i for i in out_indices
           if not isinstance(i, int) or not -num_outputs <= i < num_outputs]
    if bad or not out_indices:
        raise ValueError(
            f'{cls_name}: out_indices {out_indices} out of range; this model '
            f'has {num_outputs} outputs (0..{num_outputs - 1})')
    out_indices = tuple(sorted(i % num_outputs for i in out_indices))
    if out_type != 'featmap' and out_indices != (num_stages - 1, ):
        raise ValueError(
            f"out_type={out_type!r} returns the pooled last stage; "
            f'set out_indices=({num_stages - 1},) or out_type=\'featmap\'')
    if not -1 <= frozen_stages < num_stages:
        raise ValueError(
            f'frozen_stages={frozen_stages} out of range; use -1 '
            f'(nothing frozen) to {num_stages - 1} (all stages)')
    return out_indices


def check_input(model, x: torch.Tensor) -> None:
    """A ``(B, in_channels, H, W)`` batch that every stage of ``model`` can
    process (its spatial-reduction convolutions need a minimum size)."""
    name = type(model).__name__
    if x.dim() != 4:
        raise ValueError(f'{name} expects a (B, C, H, W) batch, got a '
                         f'tensor of shape {tuple(x.shape)}')
    if x.shape[1] != model.in_channels:
        raise ValueError(
            f'{name} was built with in_channels={model.in_channels} but the '
            f'input has {x.shape[1]} channels (shape {tuple(x.shape)}); set '
            f'in_channels={x.shape[1]} or fix the data pipeline')
    h, w = int(x.shape[2]), int(x.shape[3])
    need = model.stage_min_sizes()
    for side in (h, w):
        if any(s < n for s, n in zip(model.feature_sizes(side), need)):
            m = model.min_input_size()
            raise ValueError(
                f'input of {h}x{w} pixels is too small for {name}: its '
                f'deepest stage needs at least {m}x{m}; resize or pad the '
                f'image (e.g. Pad size_divisor=32 in the pipeline)')


def check_input_once(model, x: torch.Tensor) -> None:
    """:func:`check_input`, skipped for input shapes ``model`` has already
    checked (its ``_checked_sizes``). A compiled graph checks at trace time
    only and must not read the cache (a guard on the set would recompile
    the model after every call that adds a size)."""
    compiling = torch.compiler.is_compiling()
    key = tuple(x.shape[1:])  # channels and size: all that is checked
    if not compiling and key in model._checked_sizes:
        return
    check_input(model, x)
    if not compiling:
        model._checked_sizes.add(key)


def check_pretrained_cfg(cfg: dict) -> None:
    """``init_cfg=dict(type='Pretrained', ...)`` with what it can take."""
    unknown = set(cfg) - {'type', 'checkpoint', 'prefix', 'allow_partial',
                          'map_location', 'sha256'}
    if unknown or 'checkpoint' not in cfg:
        raise ValueError(
            f"init_cfg=dict(type='Pretrained', ...) takes checkpoint (a file "
            f'or a URL), prefix, allow_partial and sha256; got {sorted(cfg)}')
