"""Reliable training with pvt_mm models on MMEngine's runner.

``import pvt_mm.engine`` makes MMEngine checkpoints loadable under torch's
``weights_only=True`` (see :mod:`pvt_mm.engine.checkpoint`; off with
``PVT_MM_SAFE_CHECKPOINTS=0``, see docs/process_wide_changes.md) and registers
the hooks ``pvt_mm.AtomicCheckpointHook``, ``pvt_mm.NonFiniteLossHook``,
``pvt_mm.IterationSeedHook`` and ``pvt_mm.CompileHook`` (with its batch
augment ``pvt_mm.SizeBuckets``, :mod:`pvt_mm.engine.compile`). Training
scripts call :func:`prepare_config` before ``Runner.from_cfg``. docs/reliability.md
describes what is guaranteed and how it is tested.
"""
from .checkpoint import (AtomicLocalBackend, atomic_write,
                         enable_safe_checkpoints, load_from_local,
                         safe_checkpoints_wanted)
from .compile import CompileHook, SizeBuckets
from .config import (ConfigError, check_registered_types,
                     prepare_config, setup_cpu_distributed)
from .hooks import AtomicCheckpointHook, IterationSeedHook, NonFiniteLossHook

if safe_checkpoints_wanted():
    enable_safe_checkpoints()

__all__ = [
    'AtomicCheckpointHook', 'AtomicLocalBackend', 'CompileHook',
    'ConfigError', 'SizeBuckets',
    'IterationSeedHook', 'NonFiniteLossHook', 'atomic_write',
    'check_registered_types', 'enable_safe_checkpoints',
    'load_from_local', 'prepare_config', 'setup_cpu_distributed'
]
