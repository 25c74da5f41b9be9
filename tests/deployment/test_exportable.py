"""The export-time swaps compute what the OpenMMLab modules compute, and
the model is restored afterwards."""
import pytest
import torch
from mmcv.ops import RoIAlign
from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor

from evad_mm.deployment import export_onnx, onnx_exportable
from tests.deployment.conftest import build_tiny


def random_rois(num, batch, size, seed=0):
    """Boxes of all sizes, some reaching out of the frame."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    xy = torch.rand(num, 2, generator=g) * torch.tensor([w * 1.2, h * 1.2]) \
        - torch.tensor([w * .1, h * .1])
    wh = torch.rand(num, 2, generator=g) ** 2 * torch.tensor([w, h]) + .5
    index = torch.randint(0, batch, (num, 1), generator=g).float()
    return torch.cat([index, xy, xy + wh], 1)


@pytest.mark.parametrize('scale', [1 / 4, 1 / 16, 1 / 32])
def test_torchvision_roi_align_is_mmcv_roi_align(scale):
    layer = torch.nn.Sequential(RoIAlign(7, scale, sampling_ratio=2))
    feat = torch.randn(2, 8, int(256 * scale), int(320 * scale))
    rois = random_rois(300, 2, (256, 320))
    want = layer[0](feat, rois)
    with onnx_exportable(layer):
        assert layer[0].use_torchvision
        got = layer[0](feat, rois)
    assert not layer[0].use_torchvision
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_all_levels_extractor_is_mmdet_extractor():
    extractor = SingleRoIExtractor(
        roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=2),
        out_channels=8,
        featmap_strides=[4, 8, 16, 32])
    # level 3 takes boxes of sqrt(area) >= 448 pixels
    feats = tuple(
        torch.randn(2, 8, 640 // s, 800 // s) for s in (4, 8, 16, 32))
    rois = random_rois(200, 2, (640, 800), seed=1)
    levels = extractor.map_roi_levels(rois, 4)
    assert len(set(levels.tolist())) == 4  # every level has RoIs
    want = extractor(feats, rois)
    with onnx_exportable(torch.nn.Sequential(extractor)):
        got = extractor(feats, rois)
    assert 'forward' not in vars(extractor)  # restored
    assert torch.equal(got, want)


def test_max_pooling_roi_align_is_refused():
    layer = torch.nn.Sequential(RoIAlign(7, 1 / 16, pool_mode='max'))
    with pytest.raises(ValueError, match="pool_mode='max'"):
        with onnx_exportable(layer):
            pass


@pytest.mark.parametrize('kwargs, message', [
    (dict(clip_shape=(8, 64)), 'must be \\(T, H, W\\)'),
    (dict(opset=15), 'opset >= 16'),
    (dict(batch_size=0), 'batch_size=0'),
    (dict(batch_size=2, dynamic_batch=True), 'must be 1 then'),
])
def test_export_argument_errors(tmp_path, kwargs, message):
    args = dict(clip_shape=(8, 64, 64))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        export_onnx(build_tiny(), str(tmp_path / 'x.onnx'), **args)
    assert not (tmp_path / 'x.onnx').exists()
