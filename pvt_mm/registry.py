"""pvt_mm's MMEngine registries (scope ``pvt_mm``).

They are children of MMEngine's root registries, so MMDetection,
MMSegmentation and MMPretrain configs reach our modules as
``type='pvt_mm.<Name>'`` once ``custom_imports=dict(imports=['pvt_mm'])``
has run; ``locations`` lets the registry import them lazily.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

# (pvt_mm.engine.compile: the SizeBuckets batch augment of --compile)
MODELS = Registry('model', parent=MMENGINE_MODELS, scope='pvt_mm',
                  locations=['pvt_mm.models', 'pvt_mm.engine.compile'])

# Training hooks (atomic checkpoints, non-finite loss detection, ...):
# ``type='pvt_mm.AtomicCheckpointHook'`` in a config imports pvt_mm.engine.
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='pvt_mm',
                 locations=['pvt_mm.engine'])
