"""What every checkpoint layout is made of: a detector, a converter, and
key-renaming rules."""
import re
from collections import OrderedDict
from typing import Callable, Dict, NamedTuple

import torch

StateDict = Dict[str, torch.Tensor]


class CheckpointFormat(NamedTuple):
    """One published key layout of one family."""
    family: str        # 'PVTv1', 'PVTv2' or 'CvT'
    name: str          # human-readable layout name
    detect: Callable[[StateDict], bool]
    convert: Callable[[StateDict], StateDict]


def rename_keys(sd: StateDict, rules) -> StateDict:
    """Apply ``(regex, replacement)`` rules in order to every key."""
    out = OrderedDict()
    for k, v in sd.items():
        for pattern, repl in rules:
            k = re.sub(pattern, repl, k)
        out[k] = v
    return out


def merge_kv(sd: StateDict, key_name: str, value_name: str,
             kv_name: str) -> StateDict:
    """Concatenate separate key/value projections (HF layout) into one
    ``kv`` linear (official layout: keys first, then values)."""
    out = OrderedDict()
    for k, v in sd.items():
        if f'.{key_name}.' in k:
            out[k.replace(f'.{key_name}.', f'.{kv_name}.')] = torch.cat(
                [v, sd[k.replace(f'.{key_name}.', f'.{value_name}.')]], dim=0)
        elif f'.{value_name}.' not in k:
            out[k] = v
    return out


def split_fused_qkv(sd: StateDict, fused: str, q_name: str,
                    kv_name: str) -> StateDict:
    """Split an ``in_proj`` (q, k, v stacked) tensor into ``q`` and ``kv``."""
    out = OrderedDict()
    for k, v in sd.items():
        if fused in k:
            suffix = 'weight' if k.endswith('weight') else 'bias'
            base = k[:k.index(fused)]
            dims = v.shape[0] // 3
            out[f'{base}{q_name}.{suffix}'] = v[:dims]
            out[f'{base}{kv_name}.{suffix}'] = v[dims:]
        else:
            out[k] = v
    return out
