"""Pictures of a training run: predictions beside the ground truth, drawn
by MMDetection's visualizer, and the training curve (loss and validation
metric per epoch) from MMEngine's scalar log (``vis_data/scalars.json``)."""
import glob
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch


def render_predictions_with_gt(model, dataloader, out_file: str,
                               num_images: int = 4, score_thr: float = 0.3,
                               upscale: int = 2) -> str:
    """Draw ground truth (left) and ``model``'s predictions (right) for the
    first ``num_images`` images of ``dataloader``, one image per row, into
    ``out_file`` (JPEG or PNG by its suffix); return the path."""
    import mmcv
    from mmdet.visualization import DetLocalVisualizer
    vis = DetLocalVisualizer(name=f'pvt_mm_demo_{id(out_file)}')
    vis.dataset_meta = dict(getattr(model, 'dataset_meta', None)
                            or dataloader.dataset.metainfo)
    rows = []
    model.eval()
    for data in dataloader:
        with torch.no_grad():
            samples = model.test_step(data)
        for sample in samples:
            if len(rows) == num_images:
                break
            img = mmcv.imread(sample.img_path, channel_order='rgb')
            sample = sample.clone()
            scale = sample.metainfo.get('scale_factor', (1., 1.))
            gt = sample.gt_instances
            boxes = gt.bboxes
            boxes = boxes.tensor if hasattr(boxes, 'tensor') else boxes
            gt.bboxes = boxes / boxes.new_tensor(scale).repeat(2)
            if upscale != 1:
                img = mmcv.imrescale(img, upscale)
                gt.bboxes = gt.bboxes * upscale
                sample.pred_instances.bboxes = \
                    sample.pred_instances.bboxes * upscale
            vis.add_datasample('demo', img, sample, draw_gt=True,
                               draw_pred=True, pred_score_thr=score_thr)
            rows.append(vis.get_image())
        if len(rows) == num_images:
            break
    width = max(r.shape[1] for r in rows)
    pad = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)),
                  constant_values=255) for r in rows]
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    mmcv.imwrite(np.concatenate(pad)[..., ::-1], out_file)  # RGB -> BGR file
    return out_file


def latest_scalars(work_dir: str) -> str:
    """The newest ``<work_dir>/<timestamp>/vis_data/scalars.json``."""
    found = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                      'scalars.json')))
    if not found:
        raise FileNotFoundError(f'no <timestamp>/vis_data/scalars.json under '
                                f'{work_dir}: was the run logged with '
                                f"MMEngine's LocalVisBackend?")
    return found[-1]


def read_scalars(path: str) -> List[Dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def training_curve(records: Sequence[Dict], metric: str):
    """``(loss_epochs, losses, metric_epochs, metric_values)`` from the
    scalar log: training losses at fractional epochs, the metric at each
    validation (epoch 0 = an evaluation before training)."""
    train = [r for r in records if 'loss' in r and 'epoch' in r]
    per_epoch = {}
    for r in train:
        per_epoch[r['epoch']] = max(per_epoch.get(r['epoch'], 0), r['iter'])
    # iterations per epoch from the first full epoch (iter is global)
    starts, first = {}, 0
    for e in sorted(per_epoch):
        starts[e] = first
        first = per_epoch[e]
    loss_x = [r['epoch'] - 1 + (r['iter'] - starts[r['epoch']]) /
              max(1, per_epoch[r['epoch']] - starts[r['epoch']])
              for r in train]
    loss_y = [r['loss'] for r in train]
    val = {r['step']: r[metric] for r in records if metric in r}  # last wins
    steps = sorted(val)
    return loss_x, loss_y, steps, [val[s] for s in steps]


def plot_training_curve(work_dir: str, out_file: str,
                        metric: str = 'coco/bbox_mAP',
                        title: Optional[str] = None) -> str:
    """Plot loss and ``metric`` per epoch of the run logged in ``work_dir``
    (its newest ``vis_data/scalars.json``) into ``out_file``."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    lx, ly, mx, my = training_curve(read_scalars(latest_scalars(work_dir)),
                                    metric)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    ax1.plot(lx, ly, lw=1)
    ax1.set(xlabel='epoch', ylabel='training loss', title='loss')
    ax1.grid(alpha=.3)
    ax2.plot(mx, my, 'o-')
    ax2.set(xlabel='epoch (0 = untrained)', ylabel=metric,
            title=metric.split('/')[-1] + ' on the validation images')
    ax2.set_ylim(bottom=0)
    ax2.grid(alpha=.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
    return out_file
