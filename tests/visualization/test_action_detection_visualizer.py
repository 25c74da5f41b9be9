"""Tests for ``ActionDetectionVisualizer``: boxes, labels and the status line
drawn through mmengine's ``Visualizer``."""
import numpy as np
import pytest

from evad_mm.apis import KeyframeResult
from evad_mm.visualization import ActionDetectionVisualizer

H, W = 96, 128


def make_result(actor_score=0.9, labels=('wave', ), shape=(H, W)):
    h, w = shape
    return KeyframeResult(
        frame_index=0, time=0.,
        bboxes=np.array([[10 * w / W, 10 * h / H, 60 * w / W, 50 * h / H]],
                        np.float32),
        bboxes_normalized=np.array([[10 / W, 10 / H, 60 / W, 50 / H]]),
        scores=np.full((1, 7), .5), actor_scores=np.array([actor_score]),
        labels=[list(labels)], label_ids=[[7] * len(labels)],
        label_scores=[[.5] * len(labels)], image_shape=(h, w))


@pytest.fixture(scope='module')
def vis():
    return ActionDetectionVisualizer(name='test_action_detection_vis')


def test_draws_box_and_labels(vis):
    frame = np.zeros((H, W, 3), np.uint8)
    drawn = vis.draw_result(frame, make_result())
    assert drawn.shape == frame.shape and drawn.dtype == np.uint8
    assert not frame.any()  # the input is not modified
    assert drawn[10:51, 10].any()  # the left edge of the box
    assert drawn[30, 20:50].sum() == 0  # inside, below the label: empty
    assert not drawn[80:, 100:].any()
    # the box is the first palette colour (green)
    edge = drawn[40:51, 9:12]
    assert edge[..., 1].max() > 100 and edge[..., [0, 2]].max() == 0


def test_actor_threshold_and_label_count():
    frame = np.zeros((H, W, 3), np.uint8)
    vis = ActionDetectionVisualizer(name='test_actor_thr', actor_thr=0.95)
    assert not vis.draw_result(frame, make_result(0.9)).any()
    assert vis.draw_result(frame, make_result(0.96)).any()
    few = ActionDetectionVisualizer(name='test_max_labels', max_labels=1)
    many = ActionDetectionVisualizer(name='test_max_labels3', max_labels=3)
    three = make_result(labels=('wave', 'grow', 'shrink'))

    def text_bottom(vis):  # the lowest row of the labels (above the box's)
        rows = np.nonzero(vis.draw_result(frame, three)[:45, 30:50].any(
            axis=(1, 2)))[0]
        return rows.max()

    assert text_bottom(many) > text_bottom(few) + 10  # two more lines
    with pytest.raises(ValueError, match='max_labels'):
        ActionDetectionVisualizer(name='test_bad', max_labels=-1)


def test_blended_drawing_equals_drawing_on_the_frame(vis):
    """The drawing is rendered once and blended onto each frame: the same
    pixels (up to rounding) as rendering it on each frame."""
    rng = np.random.default_rng(0)
    result, status = make_result(labels=('wave', 'grow')), 'rho 0.7'
    for _ in range(2):  # the second frame reuses the rendered drawing
        frame = rng.integers(0, 256, (H, W, 3), np.uint8)
        drawn = vis.draw_result(frame, result, status)
        vis.set_image(frame)
        vis._draw_actors(result)
        vis._draw_status(status)
        direct = vis.get_image().astype(int)
        assert np.abs(drawn.astype(int) - direct).max() <= 2
        assert (drawn != frame).any(axis=-1).mean() > 0.05


def test_boxes_scale_to_the_frame(vis):
    """A result of a 96x128 frame drawn on the same frame at 2x."""
    big = vis.draw_result(np.zeros((2 * H, 2 * W, 3), np.uint8),
                          make_result())
    assert big[20:101, 20].any() and not big[20:101, 12].any()


def test_status_line(vis):
    frame = np.zeros((64, 64, 3), np.uint8)
    text = vis.status_text(2.5, (0.7, 0.7, 0.7))
    assert text == 'inference FPS 2.50  rho 0.7'
    drawn = vis.draw_result(frame, None, text)
    assert drawn[-10:].any() and not drawn[:20].any()  # bottom line only
    assert (vis.draw_result(frame, None) == frame).all()
    assert vis.status_text(None, None) == 'inference FPS -  rho -'
    assert vis.keep_rate_text((0.4, 0.6, 0.8)) == 'rho 0.4/0.6/0.8'


def test_registered_and_saves(tmp_path):
    from mmaction.registry import VISUALIZERS
    vis = VISUALIZERS.build(
        dict(type='ActionDetectionVisualizer', name='test_registered',
             actor_thr=0.5))
    assert isinstance(vis, ActionDetectionVisualizer) and vis.actor_thr == .5
    out = tmp_path / 'kf.jpg'
    drawn = vis.add_datasample('kf', np.zeros((H, W, 3), np.uint8),
                               make_result(), out_file=str(out))
    import mmcv
    saved = mmcv.imread(str(out), channel_order='rgb')
    assert saved.shape == drawn.shape and drawn.any()
    with pytest.raises(ValueError, match='draw_gt'):
        vis.add_datasample('kf', drawn, make_result(), draw_gt=True)
