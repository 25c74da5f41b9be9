import pytest
import torch
from mmaction.models.roi_heads.roi_extractors import SingleRoIExtractor3D

from evad_mm.models.roi_extractors import extend_rois
from evad_mm.registry import MMDET_MODELS, MODELS


def test_extension_geometry_and_clipping():
    rois = torch.tensor([[0., 10., 20., 29., 59.],  # w 20, h 40
                         [1., 0., 0., 9., 9.]])
    out = extend_rois(rois, (0.4, 0.2), img_shapes=[(100, 200), (50, 50)])
    # 40% wider (0.2 w each side), 20% taller (0.1 h each side)
    torch.testing.assert_close(out[0], torch.tensor([0., 6., 16., 33., 63.]))
    # clipped to [0, W - 1] x [0, H - 1]
    torch.testing.assert_close(out[1], torch.tensor([1., 0., 0., 11., 10.]))
    # without image shapes: the feature map extent
    out = extend_rois(rois[1:], (10., 10.), feat_hw=(2, 3), stride=16)
    torch.testing.assert_close(out[0], torch.tensor([1., 0., 0., 47., 31.]))


def test_pooled_feature_is_max_over_space_then_mean_over_time():
    extractor = MODELS.build(
        dict(type='ExtendedRoIExtractor3D', extend_ratio=(0., 0.),
             featmap_stride=1, output_size=2))
    feat = torch.zeros(1, 1, 2, 8, 8)
    feat[0, 0, 0, 2, 2] = 4.
    feat[0, 0, 1, 3, 3] = 2.
    rois = torch.tensor([[0., 0., 0., 7., 7.]])
    roi_feat, _ = extractor(feat, rois)
    assert roi_feat.shape == (1, 1, 1, 1, 1)
    plain = SingleRoIExtractor3D(featmap_stride=1, output_size=2,
                                 sampling_ratio=2, with_temporal_pool=False)
    per_slice = plain(feat, rois)[0]  # (1, 1, 2, 2, 2)
    expected = per_slice.amax(dim=(3, 4)).mean(2)
    torch.testing.assert_close(roi_feat.flatten(), expected.flatten())


def test_drop_in_for_single_roi_extractor_3d():
    cfg = dict(featmap_stride=16, output_size=8, sampling_ratio=0,
               with_temporal_pool=True)
    ours = MMDET_MODELS.build(
        dict(type='ExtendedRoIExtractor3D', extend_ratio=(0., 0.),
             roi_spatial_pool=None, roi_temporal_pool=None, **cfg))
    theirs = SingleRoIExtractor3D(**cfg)
    feat = torch.randn(2, 4, 4, 6, 6)
    rois = torch.tensor([[0., 5., 5., 60., 70.], [1., 0., 10., 90., 90.]])
    torch.testing.assert_close(ours(feat, rois)[0], theirs(feat, rois)[0])


@pytest.mark.parametrize('kwargs', [
    dict(extend_ratio=(-0.1, 0.2)),
    dict(extend_ratio=(0.1, )),
    dict(roi_spatial_pool='median'),
])
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        MODELS.build(dict(type='ExtendedRoIExtractor3D', **kwargs))
