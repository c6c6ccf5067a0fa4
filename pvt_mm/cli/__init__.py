"""The old import path of what the tools share, kept so that code written
against it still runs: the runner helpers are :mod:`pvt_mm.engine.runner`,
the model analysis :mod:`pvt_mm.analysis`. (The benchmark harness that
lived in ``pvt_mm.cli.analysis`` is benchmarks/harness/, outside the
package.)"""
from ..engine.runner import (SCOPES, add_common_args, build_runner,
                             config_from_args, finish, init_scope,
                             load_config, prepare, use_amp, use_compile,
                             use_test_time_aug)

__all__ = ['SCOPES', 'add_common_args', 'build_runner', 'config_from_args',
           'finish', 'init_scope', 'load_config', 'prepare', 'use_amp',
           'use_compile', 'use_test_time_aug']
