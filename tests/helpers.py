"""What the tests share besides fixtures (those are in conftest.py):
the repository root, the small architectures, tiny detectors and
segmentors built from the demo configs, a runner for the demo configs, the
tools loaded as modules, and a scaled comparison of gradients. Tests
import it as ``from helpers import ...`` (pytest puts tests/ on the path)."""
import contextlib
import copy
import os

import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Small architectures shared by the tests: every stage and code path of a
# family at a fraction of the cost. Two-stage variants for the execution
# tests; full pyramids (4 PVT stages / 3 CvT stages) where the number of
# stages matters (outputs, ONNX, checkpoints).
TWO_STAGE_V2 = dict(embed_dims=(16, 32), depths=(1, 2), num_heads=(1, 2),
                    mlp_ratios=(4, 4), sr_ratios=(2, 1))
TWO_STAGE_CVT = dict(embed_dims=(16, 32), depths=(1, 2), num_heads=(1, 2),
                     patch_sizes=(7, 3), patch_strides=(4, 2),
                     mlp_ratio=4)
PYRAMID_V2 = dict(embed_dims=(16, 32, 48, 64), num_heads=(1, 2, 3, 4),
                  depths=(1, 1, 1, 1), mlp_ratios=(4, 4, 4, 4),
                  sr_ratios=(8, 4, 2, 1))
PYRAMID_CVT = dict(embed_dims=(16, 32, 48), num_heads=(1, 2, 3),
                   depths=(1, 1, 1), patch_sizes=(7, 3, 3),
                   patch_strides=(4, 2, 2), mlp_ratio=2)


def tiny_models():
    """One small model per family and FFN / attention flavour (random
    weights, no stochastic depth): PVTv2, PVTv2-Li, PVTv1, CvT with its
    class token."""
    from pvt_mm import CvT, PVTv1, PVTv2
    return {
        'pvtv2': PVTv2(arch=TWO_STAGE_V2, drop_path_rate=0.),
        'pvtv2_li': PVTv2(arch=dict(TWO_STAGE_V2, linear=True),
                          drop_path_rate=0.),
        'pvtv1': PVTv1(arch=TWO_STAGE_V2, drop_path_rate=0.,
                       pretrain_img_size=64),
        'cvt_cls': CvT(arch=TWO_STAGE_CVT, with_cls_token=True,
                       drop_path_rate=0.),
    }


@contextlib.contextmanager
def demo_runner(tmp_path, config: str, cfg_options: dict, adapt=None):
    """MMEngine's runner for ``configs/demo/<config>`` built the way
    tools/train.py builds it, with no validation during training (the
    tests evaluate themselves), in the repo directory (the configs' data
    paths are relative to it) and with one torch thread; both restored on
    exit. ``adapt(cfg)`` edits the loaded config first."""
    from pvt_mm.engine.runner import build_runner, load_config, prepare
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cwd = os.getcwd()
    try:
        os.chdir(REPO_ROOT)
        cfg = load_config(os.path.join(REPO_ROOT, 'configs', 'demo', config),
                          cfg_options=cfg_options,
                          work_dir=str(tmp_path / 'wd'), launcher='none')
        cfg.train_cfg.val_interval = 10 ** 6
        if adapt is not None:
            adapt(cfg)
        prepare(cfg, splits=('train', 'val'))
        yield build_runner(cfg)
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)


def load_module(path: str, name: str = None):
    """The module of the script at ``path`` (relative to the repository),
    loaded from its file: tools/ and benchmarks/ hold scripts, not
    packages."""
    import importlib.util
    name = name or os.path.splitext(path)[0].replace('/', '_')
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(REPO_ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_tool(name: str):
    """The module of ``tools/<name>.py`` (e.g.
    ``'analysis_tools/get_flops'``)."""
    return load_module(f'tools/{name}.py', 'tool_' + name.replace('/', '_'))



def scaled_mismatches(expected: dict, got: dict, rtol: float,
                      atol_of_max: float) -> dict:
    """Keys whose tensor in ``got`` differs from ``expected`` by more than
    ``rtol`` x that tensor's largest magnitude + ``atol_of_max`` x the
    largest magnitude of all tensors (one that is zero in exact arithmetic,
    e.g. a key bias's gradient, holds rounding noise only), each with its
    error relative to the tensor's own largest magnitude."""
    scale = max(t.abs().max().item() for t in expected.values())
    bad = {}
    for k, a in expected.items():
        err = (got[k] - a).abs().max().item()
        own = a.abs().max().item()
        if err > rtol * own + atol_of_max * scale:
            bad[k] = err / max(own, 1e-30)
    return bad


# Tiny detectors / segmentors (tests/deploy, tests/tools): the demo configs
# (configs/demo/) with a small backbone of each family and narrow necks and
# heads. Backbone config and the channels it returns per level.
DENSE_BACKBONES = {
    'pvtv1': (dict(type='pvt_mm.PVTv1', arch=PYRAMID_V2, pretrain_img_size=64),
              [16, 32, 48, 64]),
    'pvtv2': (dict(type='pvt_mm.PVTv2', arch=PYRAMID_V2), [16, 32, 48, 64]),
    'pvtv2_li': (dict(type='pvt_mm.PVTv2', arch=dict(PYRAMID_V2, linear=True)),
                 [16, 32, 48, 64]),
    'cvt': (dict(type='pvt_mm.CvT', arch=PYRAMID_CVT, extra_downsample=True),
            [16, 32, 48, 48]),
}

_DEMO_CONFIGS = {}


def tiny_backbone_config(name: str, backbone: str):
    """The demo config ``name`` with a tiny ``backbone`` (random weights, no
    drop path) and its neck 32 channels wide; the heads as they are."""
    from pvt_mm.engine.runner import load_config
    if name not in _DEMO_CONFIGS:
        _DEMO_CONFIGS[name] = load_config(
            os.path.join(REPO_ROOT, 'configs', 'demo', name))
    cfg = copy.deepcopy(_DEMO_CONFIGS[name])
    bb, channels = DENSE_BACKBONES[backbone]
    cfg.model.backbone = dict(bb, drop_path_rate=0.0, init_cfg=None)
    cfg.model.neck.update(in_channels=channels, out_channels=32)
    return cfg


def tiny_dense_config(name: str, backbone: str):
    """The demo config ``name`` with a tiny ``backbone`` and narrow neck and
    heads (random weights)."""
    cfg = tiny_backbone_config(name, backbone)
    m = cfg.model
    if 'bbox_head' in m and 'feat_channels' in m.bbox_head:
        m.bbox_head.update(in_channels=32, feat_channels=32, stacked_convs=1)
        if m.bbox_head.type in ('GFLHead', 'ATSSHead'):
            # GN (32 groups by default): >1 channel per group, as the coarsest
            # level of a small input is 1x1
            m.bbox_head.norm_cfg = dict(type='GN', num_groups=8,
                                        requires_grad=True)
    if 'rpn_head' in m:
        m.rpn_head.update(in_channels=32, feat_channels=32)
        m.roi_head.bbox_roi_extractor.out_channels = 32
        m.roi_head.bbox_head.update(in_channels=32, conv_out_channels=32,
                                    fc_out_channels=64)
        m.roi_head.mask_roi_extractor.out_channels = 32
        m.roi_head.mask_head.update(in_channels=32, conv_out_channels=32,
                                    num_convs=1)
    if 'decode_head' in m:
        m.decode_head.update(in_channels=[32] * 4, channels=32)
        m.data_preprocessor.size = None
    return cfg


def spread_weights(model):
    """Random heads whose scores spread over (0, 1), so final results are
    not decided by ties between near-equal prior scores."""
    gen = torch.Generator().manual_seed(1)
    for name, p in model.named_parameters():
        if name.startswith('backbone.'):
            continue
        if p.dim() > 1:
            fan_in = p[0].numel()
            p.data = torch.randn(p.shape, generator=gen) / fan_in ** 0.5
        else:
            p.data = torch.randn(p.shape, generator=gen) * 0.5
    return model


def tiny_dense_model(name: str, backbone: str):
    """:func:`tiny_dense_config`'s model (eval mode) with
    :func:`spread_weights`."""
    from pvt_mm.deploy import load_model
    return spread_weights(load_model(tiny_dense_config(name, backbone)))


class LoopbackFiles:
    """A file server on 127.0.0.1 for checkpoint download tests (no
    internet): ``routes[path] = body`` (bytes) or ``(status, body,
    headers)``; a route's ``truncate`` entry (``truncated[path] = n``)
    announces the whole length but sends only ``n`` bytes, as a broken
    connection would. ``requests`` lists the paths asked for, in order.
    Use as a context manager; ``url(path)`` is the URL of a route."""

    def __init__(self):
        import http.server
        import threading
        self.routes, self.truncated, self.requests = {}, {}, []
        files = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                files.requests.append(self.path)
                route = files.routes.get(self.path)
                if route is None:
                    self.send_error(404, 'Not Found')
                    return
                status, body, headers = (route if isinstance(route, tuple)
                                         else (200, route, {}))
                self.send_response(status)
                self.send_header('Content-Length', str(len(body)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body[:files.truncated.get(self.path,
                                                           len(body))])

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                                      Handler)
        self.server.timeout = 10
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs=dict(poll_interval=0.05),
                                       daemon=True)

    @property
    def host(self) -> str:
        return f'127.0.0.1:{self.server.server_address[1]}'

    def url(self, path: str) -> str:
        return f'http://{self.host}{path}'

    def on_loopback(self, url: str) -> str:
        """``url`` with its scheme and host replaced by this server's."""
        import urllib.parse
        return self.url(urllib.parse.urlparse(url).path)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def official_pvt_v2_state_dict(arch: str = 'pvt_v2_b0', **kwargs) -> dict:
    """A state dict in the official PVTv2 repository's layout (random
    weights of timm's model of ``arch``, keys renamed to the official
    ones), as ``https://github.com/whai362/PVT/releases/...`` holds."""
    import sys

    import timm
    refs = sys.modules.get('references') or load_module(
        'tests/models/references.py', 'references')
    model = timm.create_model(arch, **kwargs)
    return refs.renamed(model.state_dict(), refs.TIMM_V2_TO_OFFICIAL)
