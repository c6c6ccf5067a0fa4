"""Recipe fidelity: every config, resolved with its inheritance, against the
official recipe it reproduces (official_recipes.py beside this file: the
official values as data, each recipe with its source files). A difference
fails unless it is a deviation the config's metafile lists with its reason;
a listed deviation that no longer differs fails too, so the list stays
true."""
import copy
import functools
import glob
import os.path as osp

import pytest

import official_recipes as R
from helpers import REPO_ROOT

from pvt_mm.paper_results import PAPER_RESULTS

pytestmark = pytest.mark.usefixtures('fast_config_parsing')

CONFIG_DIR = osp.join(REPO_ROOT, 'configs')
CONFIGS = sorted(
    osp.splitext(osp.relpath(p, CONFIG_DIR))[0]
    for p in glob.glob(osp.join(CONFIG_DIR, '**', '*.py'), recursive=True)
    if '_base_' not in p)


@functools.lru_cache(maxsize=None)
def _resolved(name):
    from mmengine.config import Config
    return Config.fromfile(osp.join(CONFIG_DIR, name + '.py'))


def load(name):
    return copy.deepcopy(_resolved(name))


def test_every_config_has_a_recipe_or_a_reason():
    for name in CONFIGS:
        reason = R.no_official_reason(name)
        assert (name in R.OFFICIAL) != bool(reason), name
    assert set(R.OFFICIAL) <= set(CONFIGS), set(R.OFFICIAL) - set(CONFIGS)


def test_every_official_recipe_names_its_sources():
    for name, recipe in R.OFFICIAL.items():
        assert recipe['source'], name
        for src in recipe['source']:
            assert src.startswith(('github.com/whai362/PVT',
                                   'github.com/leoxiaobin/CvT')), src


@pytest.mark.parametrize('name', sorted(R.OFFICIAL))
def test_config_follows_official_recipe(name):
    ours = R.recipe_of(load(name))
    diffs = R.compare(R.OFFICIAL[name], ours)
    allowed = R.deviations_for(name)
    unexplained = {k: v for k, v in diffs.items() if k not in allowed}
    assert not unexplained, (
        f'{name} differs from {R.OFFICIAL[name]["source"][0]} '
        f'(setting: (official, ours)): {unexplained}')
    stale = set(allowed) - set(diffs)
    assert not stale, f'{name}: listed deviations that no longer differ: ' \
                      f'{sorted(stale)}'


# The negative control: each mutation of a resolved config is one setting
# changed; the comparison must name the setting it breaks.
MUTATIONS = [
    ('sem_fpn_pvt_v2_b2_ade20k_40k', 'auto_scale_lr.base_batch_size', 16,
     {'lr_per_image', 'images_seen', 'batch'}),
    ('sem_fpn_pvt_v2_b2_ade20k_40k', 'train_cfg.max_iters', 80000,
     {'images_seen'}),
    ('mask_rcnn_pvt_v1_medium_coco', 'model.backbone.drop_path_rate', 0.1,
     {'drop_path_rate'}),
    ('retinanet_pvt_v2_b2_coco', 'optim_wrapper.optimizer.lr', 2e-4,
     {'lr_per_image'}),
    ('retinanet_pvt_v2_b5_coco', 'optim_wrapper.optimizer.lr', 5e-5,
     {'lr_per_image'}),
    ('retinanet_pvt_v2_b2_coco', 'optim_wrapper.optimizer.weight_decay',
     0.05, {'weight_decay'}),
    ('gfl_pvt_v2_b2_coco_3x_ms', 'optim_wrapper.type', 'OptimWrapper',
     {'fp16'}),
    ('gfl_pvt_v2_b2_coco_3x_ms', 'param_scheduler.0.end', 1000, {'warmup'}),
    ('mask_rcnn_pvt_v2_b2_coco_3x_ms', 'param_scheduler.1.milestones',
     [28, 34], {'schedule'}),
    ('mask_rcnn_pvt_v2_b2_coco_3x_ms',
     'optim_wrapper.paramwise_cfg.custom_keys.norm.decay_mult', 1.,
     {'no_decay'}),
    ('sparse_rcnn_pvt_v2_b2_coco_3x_ms', 'optim_wrapper.clip_grad', None,
     {'grad_clip'}),
    ('retinanet_pvt_v2_b2_coco', 'train_dataloader.dataset.pipeline.2.scale',
     (1333, 640), {'train_aug'}),
    ('cls_pvt_v2_b2_in1k', 'train_dataloader.sampler.type', 'DefaultSampler',
     {'sampler'}),
    ('cls_pvt_v2_b2_in1k', 'model.head.loss.label_smooth_val', 0.2,
     {'label_smoothing'}),
    ('sem_fpn_pvt_v2_b2_ade20k_40k', 'model.test_cfg.mode', 'slide',
     {'test_mode'}),
]


def _set(cfg, dotted, value):
    *path, last = dotted.split('.')
    node = cfg
    for key in path:
        node = node[int(key)] if key.isdigit() else node[key]
    if last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value


@pytest.mark.parametrize('name,setting,value,expected', MUTATIONS,
                         ids=[m[1] + '@' + m[0] for m in MUTATIONS])
def test_comparison_reports_a_changed_setting(name, setting, value,
                                              expected):
    cfg = load(name)
    before = R.compare(R.OFFICIAL[name], R.recipe_of(cfg))
    _set(cfg, setting, value)
    after = R.compare(R.OFFICIAL[name], R.recipe_of(cfg))
    assert set(after) - set(before) == expected, after


def test_lr_is_compared_per_image():
    """Half the batch at half the lr is the same recipe per image, but the
    batch itself is reported."""
    cfg = load('retinanet_pvt_v2_b2_coco')
    cfg.train_dataloader.batch_size = 1
    cfg.auto_scale_lr.base_batch_size = 8
    cfg.optim_wrapper.optimizer.lr = 5e-5
    diffs = R.compare(R.OFFICIAL['retinanet_pvt_v2_b2_coco'],
                      R.recipe_of(cfg))
    assert set(diffs) == {'batch'}


def test_every_published_row_has_a_recipe_or_a_reason():
    for name in PAPER_RESULTS:
        assert name in R.OFFICIAL or R.no_official_reason(name), name


@pytest.mark.parametrize('arch', ['b2', 'b2_li'])
def test_norm_key_skips_exactly_the_backbone_norms(arch):
    """The official 3x ``custom_keys={'norm': ...}`` matches parameter
    names; in pvt_mm's PVTv2 (as in the official one) those are exactly the
    LayerNorm weights and biases, so no other parameter loses its decay."""
    import torch.nn as nn
    from pvt_mm.models import PVTv2
    model = PVTv2(arch=arch)
    norms = {f'{m_name}.{p_name}' for m_name, m in model.named_modules()
             if isinstance(m, nn.LayerNorm)
             for p_name, _ in m.named_parameters(recurse=False)}
    named = {n for n, _ in model.named_parameters() if 'norm' in n}
    assert norms and named == norms
