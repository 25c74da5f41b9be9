"""The exported file runs in a fresh process that imports only numpy,
onnxruntime and ``evad_mm/deployment/ort_runner.py`` (loaded by path)."""
import os.path as osp
import subprocess
import sys

import numpy as np
import torch
from mmaction.structures import ActionDataSample
from mmengine.dataset import pseudo_collate

from tests.conftest import REPO
from tests.deployment.conftest import CLIP, VARIANTS

RUNNER = osp.join(REPO, 'evad_mm', 'deployment', 'ort_runner.py')

SCRIPT = '''
import importlib.util
import sys

import numpy as np
import onnxruntime  # noqa: F401

spec = importlib.util.spec_from_file_location('ort_runner', {runner!r})
ort_runner = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ort_runner)
runner = ort_runner.EVADOnnxRunner({model!r}, intra_op_threads=1)
actors = runner.detect(np.load({clips!r}))
want = np.load({want!r})
for i, found in enumerate(actors):
    np.testing.assert_array_equal(found.query_index, want[f'query_{{i}}'])
    np.testing.assert_allclose(found.bboxes, want[f'bboxes_{{i}}'],
                               atol=1e-3 / 64, rtol=0)
    np.testing.assert_allclose(found.scores, want[f'scores_{{i}}'],
                               atol=1e-4, rtol=0)
    np.testing.assert_allclose(found.actor_scores, want[f'actor_{{i}}'],
                               atol=1e-4, rtol=0)
loaded = sorted(m.split('.')[0] for m in sys.modules)
for name in ('torch', 'evad_mm', 'mmengine', 'mmcv', 'mmdet', 'mmaction'):
    assert name not in loaded, name + ' was imported'
print('actors', [len(a) for a in actors])
'''


def test_fresh_process_with_numpy_and_onnxruntime_only(exported, tmp_path):
    model, path = exported('stem-rho0.7-nms', **VARIANTS['stem-rho0.7-nms'])
    g = torch.Generator().manual_seed(11)
    clips = torch.randint(0, 256, (2, 3, *CLIP), generator=g,
                          dtype=torch.uint8)
    data = pseudo_collate([
        dict(inputs=c,
             data_samples=ActionDataSample(metainfo=dict(img_shape=CLIP[1:])))
        for c in clips
    ])
    with torch.no_grad():
        preds = model.test_step(data)
    want = {}
    for i, pred in enumerate(preds):
        p = pred.pred_instances
        want[f'bboxes_{i}'] = p.bboxes.numpy()
        want[f'scores_{i}'] = p.scores.numpy()
        want[f'actor_{i}'] = p.actor_scores.numpy()
    # which queries are actors: the PyTorch graph module's mask
    from evad_mm.deployment import EVADOnnxGraph
    with torch.no_grad():
        mask = EVADOnnxGraph(model)(model.data_preprocessor(data)['inputs'])[3]
    for i, row in enumerate(mask.numpy()):
        want[f'query_{i}'] = np.flatnonzero(row)
    np.save(tmp_path / 'clips.npy', clips.numpy())
    np.savez(tmp_path / 'want.npz', **want)
    script = SCRIPT.format(
        runner=RUNNER,
        model=path,
        clips=str(tmp_path / 'clips.npy'),
        want=str(tmp_path / 'want.npz'))
    proc = subprocess.run([sys.executable, '-c', script],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    counts = [len(p.pred_instances) for p in preds]
    assert f'actors {counts}' in proc.stdout


def test_runner_script(exported, tmp_path):
    """``python ort_runner.py MODEL.onnx --clip CLIP.npy`` prints the
    actors; a clip of another size is an error naming the fix."""
    _, path = exported('stem-rho0.7-nms', **VARIANTS['stem-rho0.7-nms'])
    np.save(tmp_path / 'clip.npy', np.zeros((3, *CLIP), np.uint8))
    proc = subprocess.run(
        [sys.executable, RUNNER, path, '--clip',
         str(tmp_path / 'clip.npy'), '--threads', '1'],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith('clip 0: ')
    assert 'person' in proc.stdout
    np.save(tmp_path / 'wide.npy', np.zeros((3, 8, 64, 80), np.uint8))
    proc = subprocess.run(
        [sys.executable, RUNNER, path, '--clip', str(tmp_path / 'wide.npy')],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert '--shape 8 64 80' in proc.stderr
