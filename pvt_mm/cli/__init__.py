"""Code the command-line tools share (``tools/`` holds thin entry points).

:mod:`.runner`: the common options of train/test, :func:`load_config`,
the downstream library's registry scope, the checks before a model is
built, MMEngine's runner. :mod:`.analysis`: FLOP counting with fused
attention, building a config's model, fake batches (get_flops, benchmark,
benchmarks/bench_backbones.py). Importing this package imports MMEngine;
``import pvt_mm`` does not import it.
"""
from .runner import (SCOPES, add_common_args, build_runner, config_from_args,
                     finish, init_scope, load_config, prepare, use_amp,
                     use_compile, use_test_time_aug)

__all__ = ['SCOPES', 'add_common_args', 'build_runner', 'config_from_args',
           'finish', 'init_scope', 'load_config', 'prepare', 'use_amp',
           'use_compile', 'use_test_time_aug']
