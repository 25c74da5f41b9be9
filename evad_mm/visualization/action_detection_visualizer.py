"""Drawing keyframe detections (actor boxes, action labels and scores) with
mmengine's :class:`~mmengine.visualization.Visualizer`."""
from typing import List, Optional, Sequence, Tuple

import numpy as np
from mmaction.registry import VISUALIZERS
from mmengine.visualization import Visualizer

__all__ = ['ActionDetectionVisualizer']

# RGB colours, one per actor (cycled)
PALETTE = [(0, 255, 0), (0, 128, 255), (255, 128, 0), (255, 0, 255),
           (255, 255, 0), (0, 255, 255), (255, 0, 128), (255, 0, 0)]


@VISUALIZERS.register_module()
class ActionDetectionVisualizer(Visualizer):
    """Draws the actors of a :class:`~evad_mm.apis.KeyframeResult`: a box per
    actor and its top action labels with scores, and an optional status line
    (e.g. the inference FPS and keep rate of a live run).

    Images are (H, W, 3) uint8 RGB, as everywhere in mmengine. Boxes are
    scaled from the result's frame size to the image's, so a result can be
    drawn on any frame of its video, resized or not.

    Args:
        name (str): Name of the instance. Defaults to 'visualizer'.
        vis_backends (list, optional): Visual backend configs, see
            :class:`~mmengine.visualization.Visualizer`.
        save_dir (str, optional): Save folder of the backends.
        palette (list[tuple]): RGB colours of the actors (cycled).
        actor_thr (float): Draw the actors whose person score reaches this.
            Defaults to 0.
        max_labels (int): At most this many labels per actor. Defaults
            to 3.
        fig_save_cfg, fig_show_cfg (dict): Figure options, see
            :class:`~mmengine.visualization.Visualizer`.

    Example::

        vis = ActionDetectionVisualizer(actor_thr=0.3)
        drawn = vis.draw_result(frame, result,
                                status=vis.status_text(2.5, (0.7, )))
    """

    def __init__(self,
                 name: str = 'visualizer',
                 vis_backends: Optional[List[dict]] = None,
                 save_dir: Optional[str] = None,
                 palette: Sequence[Tuple[int, int, int]] = tuple(PALETTE),
                 actor_thr: float = 0.,
                 max_labels: int = 3,
                 fig_save_cfg: dict = dict(frameon=False),
                 fig_show_cfg: dict = dict(frameon=False)) -> None:
        super().__init__(name=name, vis_backends=vis_backends,
                         save_dir=save_dir, fig_save_cfg=fig_save_cfg,
                         fig_show_cfg=fig_show_cfg)
        if max_labels < 0:
            raise ValueError(f'max_labels must be >= 0, got {max_labels}')
        if not palette:
            raise ValueError('palette needs at least one colour')
        self.palette = [tuple(int(c) for c in color) for color in palette]
        self.actor_thr = float(actor_thr)
        self.max_labels = int(max_labels)
        self._overlay_cache = None  # (key, result, overlay) last drawn

    @staticmethod
    def keep_rate_text(keep_rate: Optional[Sequence[float]]) -> str:
        """'rho 0.7' for one rate, 'rho 0.4/0.6/0.8' for one per pruning
        layer, 'rho -' without token pruning."""
        if not keep_rate:
            return 'rho -'
        if len(set(keep_rate)) == 1:
            return f'rho {keep_rate[0]:g}'
        return 'rho ' + '/'.join(f'{r:g}' for r in keep_rate)

    @classmethod
    def status_text(cls, inference_fps: Optional[float],
                    keep_rate: Optional[Sequence[float]]) -> str:
        """The live status line: inference FPS ('-' before the first) and
        keep rate."""
        fps = f'{inference_fps:.2f}' if inference_fps else '-'
        return f'inference FPS {fps}  {cls.keep_rate_text(keep_rate)}'

    def _sizes(self) -> Tuple[float, float]:
        """Line width and font size in points for the current image: 1 px
        lines (2 px from a short side of 480) and text about 1/24 of the
        short side (at least 8 px)."""
        short = min(self.width, self.height)
        to_points = 72. / self.dpi
        return ((1 if short < 480 else 2) * to_points,
                max(short / 24., 8.) * to_points)

    def _draw_actors(self, result) -> None:
        h, w = result.image_shape
        scale = np.array([self.width / w, self.height / h] * 2, np.float32)
        line_width, font_size = self._sizes()
        limit = np.array([self.width - 1, self.height - 1] * 2, np.float32)
        for i, box in enumerate(result.bboxes):
            if result.actor_scores[i] < self.actor_thr:
                continue
            box = np.clip(np.asarray(box, np.float32) * scale, 0, limit)
            color = self.palette[i % len(self.palette)]
            self.draw_bboxes(box[None], edge_colors=[color],
                             line_widths=line_width, alpha=1.)
            lines = [
                f'{name} {score:.2f}' for name, score in zip(
                    result.labels[i], result.label_scores[i])
            ][:self.max_labels]
            if lines:
                self.draw_texts(
                    '\n'.join(lines), box[None, :2], font_sizes=font_size,
                    colors='black',
                    bboxes=dict(facecolor=tuple(c / 255 for c in color),
                                edgecolor='none', pad=1, alpha=1.))

    def _draw_status(self, text: str) -> None:
        _, font_size = self._sizes()
        self.draw_texts(
            text, np.array([[1., self.height - 2.]]), font_sizes=font_size,
            colors='white', vertical_alignments='bottom',
            bboxes=dict(facecolor='black', edgecolor='none', pad=1,
                        alpha=1.))

    def _render_overlay(self, shape: Tuple[int, int], result,
                        status: Optional[str]) -> tuple:
        """The drawing alone: rendered on black and on white, which gives
        each pixel's colour times opacity (premultiplied) and opacity.

        Returns:
            tuple: the (y, x) slices of the drawn region, its premultiplied
            colour (h, w, 3) and its opacity (h, w, 1), float32.
        """
        renders = []
        for background in (0, 255):
            self.set_image(np.full((*shape, 3), background, np.uint8))
            if result is not None:
                self._draw_actors(result)
            if status:
                self._draw_status(status)
            renders.append(self.get_image().astype(np.float32))
        on_black, on_white = renders
        alpha = 1. - (on_white - on_black).mean(-1, keepdims=True) / 255.
        rows = np.nonzero(alpha.any(axis=(1, 2)))[0]
        cols = np.nonzero(alpha.any(axis=(0, 2)))[0]
        if not len(rows):
            return (slice(0, 0), slice(0, 0)), on_black[:0, :0], alpha[:0, :0]
        region = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        return region, on_black[region], alpha[region]

    def draw_result(self,
                    image: np.ndarray,
                    result=None,
                    status: Optional[str] = None) -> np.ndarray:
        """Draw a keyframe result and a status line on an image.

        The drawing is rendered by mmengine's ``Visualizer`` once per
        (frame size, result, status) and blended onto each image, so that
        drawing one result on the many frames around its keyframe costs a
        blend per frame. Results are taken as unchanged once drawn.

        Args:
            image (np.ndarray): (H, W, 3) uint8 RGB; not modified.
            result (KeyframeResult, optional): The actors (person score >=
                ``actor_thr``) and their labels, best first, at most
                ``max_labels``.
            status (str, optional): A line at the bottom left.

        Returns:
            np.ndarray: The drawn (H, W, 3) uint8 RGB image (a copy).
        """
        drawn = np.array(image, dtype=np.uint8, copy=True)
        if result is not None and not (np.asarray(result.actor_scores) >=
                                       self.actor_thr).any():
            result = None  # nothing to draw
        if result is None and not status:
            return drawn
        key = (drawn.shape[:2], status, self.actor_thr, self.max_labels)
        cached = self._overlay_cache
        if cached is None or cached[0] != key or cached[1] is not result:
            cached = (key, result,
                      self._render_overlay(drawn.shape[:2], result, status))
            self._overlay_cache = cached
        region, color, alpha = cached[2]
        blended = color + (1. - alpha) * drawn[region]
        drawn[region] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
        return drawn

    def add_datasample(self,
                       name: str,
                       image: np.ndarray,
                       data_sample=None,
                       draw_gt: bool = False,
                       draw_pred: bool = True,
                       show: bool = False,
                       wait_time: float = 0,
                       out_file: Optional[str] = None,
                       step: int = 0) -> np.ndarray:
        """Draw a keyframe's detections and show, save or record them.

        Args:
            name (str): The image identifier.
            image (np.ndarray): (H, W, 3) uint8 RGB keyframe.
            data_sample (KeyframeResult, optional): Its detections.
            draw_gt (bool): Ground truth is not drawn; must be False.
            draw_pred (bool): Draw ``data_sample``. Defaults to True.
            show (bool): Show the drawn image in a window.
            wait_time (float): Seconds it is shown (0: until a key).
            out_file (str, optional): Save it there (the backends are then
                not used) instead of recording it in the backends.
            step (int): Global step for the backends.

        Returns:
            np.ndarray: The drawn (H, W, 3) RGB image.
        """
        if draw_gt:
            raise ValueError('ActionDetectionVisualizer draws predictions '
                             'only: draw_gt must be False')
        drawn = self.draw_result(image, data_sample if draw_pred else None)
        if show:
            self.show(drawn, win_name=name, wait_time=wait_time)
        if out_file is not None:
            import mmcv
            mmcv.imwrite(drawn[..., ::-1], out_file)
        else:
            self.add_image(name, drawn, step)
        return drawn
