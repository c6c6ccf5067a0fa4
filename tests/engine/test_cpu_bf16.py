"""bf16 inference on the CPU (tools/test.py / tools/misc/infer.py --amp,
pvt_mm/engine/cpu_bf16.py): the network under bf16 autocast, the
post-processing in fp32. Autocast around the whole test_step stops in
mmcv's NMS (the negative control); the split runs RetinaNet, Mask R-CNN
and Semantic FPN, its network outputs stay within bf16 rounding of fp32,
and it can be undone."""
import pytest
import torch

from helpers import spread_weights, tiny_dense_config, tiny_dense_model
from pvt_mm.engine.cpu_bf16 import (disable_cpu_bf16, enable_cpu_bf16,
                                    network_parts)
from pvt_mm.runtime.backends import cpu_has_bf16

pytestmark = [
    pytest.mark.usefixtures('fast_config_parsing', 'one_thread'),
    pytest.mark.skipif(not cpu_has_bf16(), reason='this CPU has no native '
                       'bf16 (AVX512-BF16 / AMX): --amp refuses to run here')]


def batch(model, hw=(96, 128)):
    from mmdet.structures import DetDataSample
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, *hw), generator=g, dtype=torch.uint8)
    sample = DetDataSample(metainfo=dict(ori_shape=hw, img_shape=hw,
                                         scale_factor=(1., 1.)))
    return dict(inputs=[image], data_samples=[sample])


def network_outputs(model, data):
    """What the dense head computes from the backbone and neck (fp32 on
    the way out)."""
    x = model.data_preprocessor(data, False)['inputs']
    with torch.no_grad():
        return model.bbox_head(model.extract_feat(x))


def test_plain_autocast_stops_in_the_post_processing():
    """Negative control: why the split exists."""
    model = tiny_dense_model('retinanet_pvt_v2_b0_demo.py', 'pvtv2')
    with pytest.raises(RuntimeError, match='(?i)bfloat16|BFloat16|Half'):
        with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
            model.test_step(batch(model))


def test_network_in_bf16_post_processing_in_fp32():
    model = tiny_dense_model('retinanet_pvt_v2_b0_demo.py', 'pvtv2')
    data = batch(model)
    ref = network_outputs(model, data)
    parts = enable_cpu_bf16(model)
    assert parts[0] == 'extract_feat' and 'bbox_head' in parts
    got = network_outputs(model, data)
    for level_ref, level_got in zip(ref[0] + ref[1], got[0] + got[1]):
        assert level_got.dtype == torch.float32
        scale = level_ref.abs().max()
        err = (level_got - level_ref).abs().max() / scale
        # bf16 keeps 8 significant bits (2^-8 relative); through the
        # backbone, neck and head the error grows to a few times that
        assert 0 < err < 16 * 2 ** -8, err
    with torch.no_grad():
        (res, ) = model.test_step(data)
    assert res.pred_instances.scores.dtype == torch.float32
    assert len(res.pred_instances) > 0
    disable_cpu_bf16(model)
    again = network_outputs(model, data)
    assert all(torch.equal(a, b) for a, b in zip(ref[0], again[0]))


@pytest.mark.parametrize('config', ['mask_rcnn_pvt_v2_b0_demo.py',
                                    'sem_fpn_pvt_v2_b0_demo.py'])
def test_two_stage_and_segmentor_run(config):
    from pvt_mm.deploy import load_model
    model = spread_weights(load_model(tiny_dense_config(config, 'pvtv2')))
    parts = network_parts(model)
    assert 'extract_feat' in parts
    if config.startswith('mask'):
        assert {'rpn_head', 'roi_head.bbox_head', 'roi_head.mask_head'} <= \
            set(parts)
        data = batch(model)
    else:
        assert 'decode_head' in parts
        from mmseg.structures import SegDataSample
        image = torch.randint(0, 256, (3, 96, 128), dtype=torch.uint8)
        data = dict(inputs=[image], data_samples=[SegDataSample(
            metainfo=dict(ori_shape=(96, 128), img_shape=(96, 128)))])
    with torch.no_grad():
        ref = model.test_step(data)[0]
    enable_cpu_bf16(model)
    with torch.no_grad():
        got = model.test_step(data)[0]
    if config.startswith('sem'):
        agree = (ref.pred_sem_seg.data == got.pred_sem_seg.data).float()
        assert agree.mean() > 0.8
    else:
        assert got.pred_instances.bboxes.dtype == torch.float32
        assert got.pred_instances.masks.shape[1:] == (96, 128)
