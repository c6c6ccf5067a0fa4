"""Weights by URL, without internet: checkpoints in the official, timm and HF
layouts served over 127.0.0.1 (helpers.LoopbackFiles), downloaded once into
torch hub's cache (a fresh TORCH_HOME per test), loaded like local files;
each failure (unreachable, 404, HTML, truncated, wrong hash, corrupt cached
copy, another family) gives its own error and leaves nothing in the cache;
the checks tools/train.py and tools/test.py run before building anything."""
import glob
import hashlib
import io
import os
import os.path as osp

import pytest
import torch

from helpers import (PYRAMID_CVT, PYRAMID_V2, REPO_ROOT, LoopbackFiles,
                     load_tool, official_pvt_v2_state_dict)
from pvt_mm import CvT, PVTv2
from pvt_mm.weights import (CheckpointDownloadError, CheckpointError,
                            cache_dir, check_weight_sources, load_pretrained)
from pvt_mm.weights.preflight import weight_sources, without_pretrained

SMALL_V2 = dict(PYRAMID_V2, mlp_ratios=(8, 8, 4, 4))
OFFICIAL_PATH = '/whai362/PVT/releases/download/v2/pvt_v2_b0.pth'
V2_KW = dict(arch=SMALL_V2)


@pytest.fixture(autouse=True)
def torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache for each test."""
    import torch.hub
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.setattr(torch.hub, '_hub_dir', None)
    return tmp_path / 'torch_home'


@pytest.fixture
def server():
    with LoopbackFiles() as files:
        yield files


def saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.fixture(scope='module')
def small_official():
    """A small PVTv2 in the official layout (timm's model, renamed)."""
    return official_pvt_v2_state_dict(
        'pvt_v2_b0', embed_dims=list(SMALL_V2['embed_dims']),
        num_heads=list(SMALL_V2['num_heads']), depths=list(SMALL_V2['depths']))


def cached_files():
    folder = cache_dir()
    return sorted(os.listdir(folder)) if osp.isdir(folder) else []


def pretrained(url, **extra):
    return dict(type='Pretrained', checkpoint=url, **extra)


def assert_loaded(model, sd):
    """Every backbone tensor the checkpoint holds equals its (converted)
    tensor; the rest are the dense extras a checkpoint never has."""
    from pvt_mm.weights import convert_state_dict
    _, converted = convert_state_dict(dict(sd), model.family)
    own = model.state_dict()
    shared = [k for k in own if k in converted]
    assert len(shared) > len(own) // 2
    for key in shared:
        assert torch.equal(own[key], converted[key]), key
    fresh = [k for k in own if k not in converted]
    assert all(k.startswith(('out_norms.', 'extra_')) for k in fresh), fresh


# ------------------------------------------------------------- downloads

def test_official_url_downloads_once_then_loads_from_the_cache(
        server, small_official):
    server.routes[OFFICIAL_PATH] = saved(small_official)
    url = server.url(OFFICIAL_PATH)
    for _ in range(2):
        model = PVTv2(**V2_KW, init_cfg=pretrained(url))
        model.init_weights()
        assert_loaded(model, small_official)
    assert server.requests == [OFFICIAL_PATH]  # the second load: cache hit
    assert cached_files() == ['pvt_v2_b0.pth']


def test_timm_and_hf_safetensors_from_the_hub(server):
    """timm's and HF's hubs publish ``model.safetensors``; the same file
    name in two repositories gets two cache entries."""
    from safetensors.torch import save as save_safetensors
    timm = pytest.importorskip('timm')
    transformers = pytest.importorskip('transformers')
    timm_sd = timm.create_model(
        'pvt_v2_b0', embed_dims=list(SMALL_V2['embed_dims']),
        num_heads=list(SMALL_V2['num_heads']),
        depths=list(SMALL_V2['depths'])).state_dict()
    hf = transformers.CvtForImageClassification(transformers.CvtConfig(
        embed_dim=[16, 32, 48], num_heads=[1, 2, 3], depth=[1, 2, 3],
        num_labels=10))
    hf_sd = {k: v.contiguous() for k, v in hf.state_dict().items()}
    timm_path = '/timm/pvt_v2_b0.in1k/resolve/main/model.safetensors'
    hf_path = '/microsoft/cvt-13/resolve/main/model.safetensors'
    server.routes[timm_path] = save_safetensors(timm_sd)
    server.routes[hf_path] = save_safetensors(hf_sd)
    v2 = PVTv2(**V2_KW, init_cfg=pretrained(server.url(timm_path)))
    report = load_pretrained(v2, server.url(timm_path))
    assert report['format'] == 'timm pvt_v2'
    assert_loaded(v2, timm_sd)
    cvt = CvT(arch=dict(PYRAMID_CVT, depths=(1, 2, 3), mlp_ratio=4))
    report = load_pretrained(cvt, server.url(hf_path))
    assert report['format'] == 'HF CvtModel'
    assert_loaded(cvt, hf_sd)
    assert cached_files() == ['microsoft--cvt-13--model.safetensors',
                              'timm--pvt_v2_b0.in1k--model.safetensors']


def test_sha256_is_checked(server, small_official):
    body = saved(small_official)
    digest = hashlib.sha256(body).hexdigest()
    server.routes[OFFICIAL_PATH] = body
    url = server.url(OFFICIAL_PATH)
    with pytest.raises(CheckpointDownloadError,
                       match=f'its SHA-256 is {digest}, but 0123abcd'):
        load_pretrained(PVTv2(**V2_KW), url, sha256='0123abcd')
    assert cached_files() == []  # a mismatch keeps nothing
    load_pretrained(PVTv2(**V2_KW), url, sha256=digest[:10])  # a prefix
    assert cached_files() == ['pvt_v2_b0.pth']
    # The cached copy is checked too, and removed when it does not match.
    with pytest.raises(CheckpointDownloadError, match='cached copy.*removed'):
        load_pretrained(PVTv2(**V2_KW), url, sha256='0123abcd')
    assert cached_files() == []
    with pytest.raises(CheckpointError, match='sha256=.*hex digits'):
        load_pretrained(PVTv2(**V2_KW), url, sha256='xyz')


def test_sha256_in_init_cfg(server, small_official):
    body = saved(small_official)
    server.routes[OFFICIAL_PATH] = body
    model = PVTv2(**V2_KW, init_cfg=pretrained(
        server.url(OFFICIAL_PATH), sha256='ffffffff'))
    with pytest.raises(CheckpointDownloadError, match='SHA-256'):
        model.init_weights()


# ------------------------------------------------------------- failures

def expect_download_error(url, match):
    with pytest.raises(CheckpointDownloadError, match=match) as info:
        load_pretrained(PVTv2(**V2_KW), url)
    message = str(info.value)
    # The URL, the cache path and the local-file override, in one message.
    assert url in message
    assert osp.join(cache_dir(), osp.basename(url)) in message
    assert '--cfg-options model.backbone.init_cfg.checkpoint=' in message
    assert cached_files() == []  # no partial file, no bad file
    return message


def test_unreachable_server():
    with LoopbackFiles() as files:
        url = files.url(OFFICIAL_PATH)
    # the server is closed now: connection refused
    expect_download_error(url, 'cannot be reached')


def test_404(server):
    expect_download_error(server.url(OFFICIAL_PATH), 'HTTP 404')


def test_html_instead_of_a_checkpoint(server):
    server.routes[OFFICIAL_PATH] = (
        200, b'<!DOCTYPE html><html><body>Sign in</body></html>',
        {'Content-Type': 'text/html'})
    expect_download_error(server.url(OFFICIAL_PATH),
                          'an HTML page .text/html.*not a checkpoint')


def test_truncated_download(server, small_official):
    body = saved(small_official)
    server.routes[OFFICIAL_PATH] = body
    server.truncated[OFFICIAL_PATH] = len(body) // 2
    expect_download_error(server.url(OFFICIAL_PATH),
                          f'(truncated|broke).*of {len(body)}')


def test_corrupt_file_is_not_kept(server, small_official):
    """A file with a checkpoint's first bytes and the announced length that
    torch cannot read: the error names it, and the cache drops it."""
    body = bytearray(saved(small_official))
    body[len(body) // 2:] = bytes(len(body) - len(body) // 2)
    server.routes[OFFICIAL_PATH] = bytes(body)
    with pytest.raises(CheckpointError, match='cached copy .* removed'):
        load_pretrained(PVTv2(**V2_KW), server.url(OFFICIAL_PATH))
    assert cached_files() == []


def test_checkpoint_of_another_family(server):
    from pvt_mm import PVTv1
    server.routes[OFFICIAL_PATH] = saved(
        PVTv1(arch=SMALL_V2, pretrain_img_size=64).state_dict())
    with pytest.raises(CheckpointError, match='PVTv1.*PVTv2|pvt_v1'):
        load_pretrained(PVTv2(**V2_KW), server.url(OFFICIAL_PATH))


def test_missing_local_file_says_file_or_url(tmp_path):
    with pytest.raises(CheckpointError, match='does not exist.*file or the '
                       'checkpoint\'s URL'):
        load_pretrained(PVTv2(**V2_KW), str(tmp_path / 'nope.pth'))


# ------------------------------------------- configs as users write them

def test_mmdet_pvt_v2_config_moved_onto_pvt_mm(server):
    """MMDetection's own PVTv2-B0 RetinaNet config keeps its init_cfg (the
    official release URL) when its backbone becomes pvt_mm.PVTv2; only the
    host is this test's."""
    from pvt_mm.engine.runner import load_config
    cfg = load_config('mmdet::pvt/retinanet_pvtv2-b0_fpn_1x_coco.py')
    init_cfg = dict(cfg.model.backbone.init_cfg)
    # MMDetection's PVT configs leave out type='Pretrained'.
    assert init_cfg == dict(checkpoint='https://github.com/whai362/PVT/'
                            'releases/download/v2/pvt_v2_b0.pth')
    assert [s.key for s in weight_sources(cfg)] == [
        'model.backbone.init_cfg.checkpoint']
    sd = official_pvt_v2_state_dict('pvt_v2_b0')
    server.routes[OFFICIAL_PATH] = saved(sd)
    init_cfg['checkpoint'] = server.on_loopback(init_cfg['checkpoint'])
    model = PVTv2(arch='b0', init_cfg=init_cfg)
    model.init_weights()
    assert_loaded(model, sd)
    assert server.requests == [OFFICIAL_PATH]


def test_every_base_points_at_the_official_download():
    from mmengine.config import Config
    bases = sorted(glob.glob(osp.join(REPO_ROOT, 'configs', '_base_',
                                      'models', '*.py')))
    assert len(bases) == 14
    for path in bases:
        cfg = Config.fromfile(path)
        url = cfg.backbone.init_cfg.checkpoint
        assert url == cfg.pretrained
        name = osp.basename(path)[:-3]
        if name.startswith('cvt'):
            assert url.startswith('https://huggingface.co/microsoft/cvt-'), url
        else:
            file = name.replace('pvt_v1_', 'pvt_') + '.pth'
            assert url == ('https://github.com/whai362/PVT/releases/download/'
                           f'v2/{file}'), url


# ------------------------------------------------- before anything is built

def test_weight_sources_of_a_config():
    from pvt_mm.engine.runner import load_config
    cfg = load_config(osp.join(REPO_ROOT, 'configs',
                               'mask_rcnn_pvt_v2_b2_coco.py'))
    cfg.load_from = 'work_dirs/x.pth'
    found = weight_sources(cfg)
    assert [(s.key, s.source) for s in found] == [
        ('model.backbone.init_cfg.checkpoint', cfg.pretrained),
        ('load_from', 'work_dirs/x.pth')]
    # Testing reads the trained checkpoint only.
    assert [s.key for s in weight_sources(cfg, training=False)] == [
        'load_from']
    stripped = without_pretrained(cfg.model)
    assert stripped['backbone']['init_cfg'] is None
    assert weight_sources(dict(model=stripped)) == []


def test_preflight_fetches_once_and_names_the_key(server, small_official):
    cfg = dict(model=dict(backbone=dict(
        type='pvt_mm.PVTv2', init_cfg=pretrained(server.url(OFFICIAL_PATH)))))
    with pytest.raises(CheckpointDownloadError,
                       match=r'^model\.backbone\.init_cfg\.checkpoint: .*'
                       'HTTP 404'):
        check_weight_sources(cfg)
    server.routes[OFFICIAL_PATH] = saved(small_official)
    (path, ) = check_weight_sources(cfg)
    assert path == osp.join(cache_dir(), 'pvt_v2_b0.pth')
    check_weight_sources(cfg)
    assert server.requests == [OFFICIAL_PATH] * 2  # the 404, then one GET


def test_load_from_url_goes_through_the_cache(server, small_official):
    """MMEngine's http(s) loader (load_from, other modules' Pretrained) is
    pvt_mm's: the same cache, checks and weights_only reading."""
    import pvt_mm.engine  # noqa: F401
    from mmengine.runner import CheckpointLoader
    server.routes['/ckpt/epoch_12.pth'] = saved(
        dict(state_dict=small_official, meta=dict(epoch=12)))
    url = server.url('/ckpt/epoch_12.pth')
    ckpt = CheckpointLoader.load_checkpoint(url, map_location='cpu')
    assert ckpt['meta']['epoch'] == 12
    CheckpointLoader.load_checkpoint(url, map_location='cpu')
    assert server.requests == ['/ckpt/epoch_12.pth']
    assert cached_files() == ['epoch_12.pth']


def test_train_stops_before_building_when_the_download_fails(
        tmp_path, server, monkeypatch):
    """tools/train.py with a backbone URL that answers 404: the error comes
    from the checks, before MMEngine builds dataloaders or the model."""
    from pvt_mm.data.demo_data import make_demo_data
    data = make_demo_data(str(tmp_path / 'data'), num_train=2, num_val=2,
                          classes='coco', coco2017=True)
    train = load_tool('train')
    monkeypatch.setattr(train, 'build_runner', lambda cfg: pytest.fail(
        'the runner was built'))
    config = osp.join(REPO_ROOT, 'configs', 'retinanet_pvt_v2_b0_coco.py')
    url = server.url(OFFICIAL_PATH)
    with pytest.raises(CheckpointDownloadError, match='HTTP 404') as info:
        train.main([config, '--work-dir', str(tmp_path / 'wd'),
                    '--cfg-options', f'data_root={data}/coco/',
                    f'model.backbone.init_cfg.checkpoint={url}'])
    assert str(info.value).startswith('model.backbone.init_cfg.checkpoint: ')
    assert '--cfg-options model.backbone.init_cfg.checkpoint=' in str(
        info.value)


def test_export_without_checkpoint_needs_no_weights(server):
    """An export for a speed test (no checkpoint) builds random weights and
    never asks for the pretrained download."""
    from pvt_mm.deploy import load_model
    from pvt_mm.engine.runner import load_config
    cfg = load_config(osp.join(REPO_ROOT, 'configs',
                               'retinanet_pvt_v2_b0_coco.py'))
    cfg.model.backbone.init_cfg.checkpoint = server.url(OFFICIAL_PATH)
    load_model(cfg)
    assert server.requests == []
