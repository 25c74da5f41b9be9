"""tools/deployment/export_onnx.py on the toy model (the demos on exported
files: tests/tools/test_demo.py and test_webcam_demo.py)."""
import contextlib
import io

import pytest

from tests.conftest import load_tool
from tests.deployment.conftest import TINY_TOY

export_tool = load_tool('deployment', 'export_onnx')


@pytest.fixture(scope='module')
def toy_onnx(tmp_path_factory):
    """The toy config (conv stem, score threshold + NMS) at keep rate 0.5,
    random weights, for 8 x 64 x 80 clips (80x64 videos); and what the
    tool printed."""
    out = tmp_path_factory.mktemp('export') / 'toy.onnx'
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rc = export_tool.main([
            TINY_TOY, 'none', str(out), '--shape', '8', '64', '80',
            '--keep-rate', '0.5', '--check-clips', '1'
        ])
    assert rc == 0, printed.getvalue()
    return out, printed.getvalue()


def test_export_tool_writes_and_checks(toy_onnx):
    from evad_mm.deployment import ONNXDetector
    path, printed = toy_onnx
    assert 'keep rate 0.5/0.5/0.5' in printed
    assert 'onnx.checker: ok' in printed
    assert 'clip 0: onnxruntime' in printed and 'PyTorch eager/fused' in \
        printed and 'check: ok' in printed
    detector = ONNXDetector(str(path))
    assert detector.info.input_shape == [1, 3, 8, 64, 80]
    assert detector.keep_rate == (0.5, 0.5, 0.5)
    assert detector.cfg.model.backbone.keep_rate == 0.5
    assert detector.info.classes == list(detector.cfg.classes)
    assert detector.dataset_meta['classes'][0] == 'move_left'


def test_export_tool_needs_a_shape_for_short_side_resizing(tmp_path, capsys):
    rc = export_tool.main([TINY_TOY, 'none', str(tmp_path / 'x.onnx')])
    assert rc == 2
    assert '--shape 8 H W' in capsys.readouterr().err
    assert not (tmp_path / 'x.onnx').exists()
