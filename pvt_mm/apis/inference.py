"""Inference that shows its result, on MMDetection's / MMSegmentation's own
inferencers and visualizers.

:func:`build_inferencer` returns a ``DetInferencer`` or ``MMSegInferencer``
(picked by the config's ``default_scope``) that loads the checkpoint
strictly (theirs only warn when weights are missing or do not fit) and, with
``onnx=``, runs the exported model through ONNX Runtime
(:class:`pvt_mm.deploy.ORTModel`) instead of PyTorch. :func:`run_inference`
writes ``OUT/vis/<image>`` (boxes, instance masks or the segmentation
overlay) and ``OUT/preds/<image name>.json`` (the raw predictions; for
segmentation also the label map as ``<image name>.png``).
"""
import json
import os
import os.path as osp
from typing import List, Optional, Sequence

import numpy as np

from pvt_mm.deploy.checks import check_state_dict
from pvt_mm.runtime.image import IMAGE_SUFFIXES, list_images  # noqa: F401


def _strict(base):
    """``base`` inferencer whose checkpoint must fit the config's model."""

    class Strict(base):

        def _load_weights_to_model(self, model, checkpoint, cfg):
            if checkpoint is not None:
                state = checkpoint.get('state_dict', checkpoint)
                check_state_dict(model, state, self.pvt_mm_weights,
                                 cfg.filename)
            super()._load_weights_to_model(model, checkpoint, cfg)

    Strict.__name__ = Strict.__qualname__ = 'Strict' + base.__name__
    return Strict


def build_inferencer(config: str, checkpoint: Optional[str] = None,
                     onnx: Optional[str] = None, device: str = 'cpu',
                     cfg_options: Optional[dict] = None):
    """A strict ``DetInferencer`` / ``MMSegInferencer`` for ``config``;
    with ``onnx`` its model is the export run by ONNX Runtime (two-stage
    and query-based exports also need ``checkpoint`` for the heads that run
    in PyTorch)."""
    from pvt_mm.engine.runner import init_scope, load_config
    cfg = load_config(config, cfg_options)
    scope = init_scope(cfg)
    if scope == 'mmdet':
        from mmdet.apis import DetInferencer as base
        kwargs = dict(palette='none', show_progress=False)
    elif scope == 'mmseg':
        from mmseg.apis import MMSegInferencer as base
        kwargs = {}
    else:
        raise ValueError(f'{config}: rendering predictions covers detection '
                         f'(mmdet) and segmentation (mmseg) configs, not '
                         f'{scope}')
    cls = _strict(base)
    cls.pvt_mm_weights = checkpoint
    if onnx is None and checkpoint is None:
        raise ValueError('give a checkpoint (PyTorch) or --onnx (ONNX '
                         'Runtime): a model with random weights predicts '
                         'nothing worth rendering')
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # "weights is None" for ONNX runs
        inferencer = cls(model=cfg, weights=checkpoint, device=device,
                         scope=scope, **kwargs)
    inferencer.pvt_mm_scope = scope
    meta = dict(inferencer.model.dataset_meta or {})
    if onnx is not None:
        from pvt_mm.deploy import ORTModel
        ort_model = ORTModel(onnx, inferencer.model,
                             weights_loaded=checkpoint is not None)
        from pvt_mm.deploy.ort_runner import exported_dataset_meta
        meta.update(exported_dataset_meta(ort_model.meta))
        inferencer.model = ort_model
    classes = meta.get('classes')
    if scope == 'mmdet':
        meta.setdefault('palette', 'random')
        inferencer.model.dataset_meta = meta
        inferencer.visualizer.dataset_meta = meta
    elif classes:
        # mmseg's visualizer falls back to Cityscapes' 19 colours when the
        # checkpoint names classes but no palette
        palette = meta.get('palette')
        if not palette or len(palette) != len(classes):
            rng = np.random.RandomState(42)
            palette = rng.randint(0, 255, size=(len(classes), 3)).tolist()
        inferencer.model.dataset_meta = dict(classes=classes, palette=palette)
    return inferencer


def run_inference(inferencer, images: Sequence[str], out_dir: str,
                  score_thr: float = 0.3) -> List[dict]:
    """Render and save the predictions for ``images`` (files / folders)
    under ``out_dir``; return ``[{'image', 'vis', 'pred'}]`` per image."""
    files = list_images(images)
    vis_dir, pred_dir = osp.join(out_dir, 'vis'), osp.join(out_dir, 'preds')
    os.makedirs(pred_dir, exist_ok=True)
    written = []
    if inferencer.pvt_mm_scope == 'mmdet':
        inferencer(files, out_dir=out_dir, no_save_pred=False,
                   pred_score_thr=score_thr)
        for f in files:
            stem = osp.splitext(osp.basename(f))[0]
            written.append(dict(image=f,
                                vis=osp.join(vis_dir, osp.basename(f)),
                                pred=osp.join(pred_dir, stem + '.json')))
        return written
    import mmcv
    from PIL import Image
    os.makedirs(vis_dir, exist_ok=True)
    classes = list((inferencer.model.dataset_meta or {}).get('classes') or [])
    for f in files:
        # MMSegInferencer names its saved files by a counter; keep the
        # image's name instead (as DetInferencer does)
        res = inferencer(f, return_vis=True)
        label = np.asarray(res['predictions']).astype(np.int64)
        stem = osp.splitext(osp.basename(f))[0]
        vis = osp.join(vis_dir, osp.basename(f))
        mmcv.imwrite(np.asarray(res['visualization'])[..., ::-1], vis)
        Image.fromarray(label.astype(np.uint8)).save(
            osp.join(pred_dir, stem + '.png'))
        pred = osp.join(pred_dir, stem + '.json')
        counts = np.bincount(label.ravel(), minlength=len(classes))
        with open(pred, 'w') as fh:
            json.dump(dict(image=f, classes=classes,
                           pixels_per_class=counts.tolist(),
                           sem_seg=label.tolist()), fh)
        written.append(dict(image=f, vis=vis, pred=pred))
    return written
