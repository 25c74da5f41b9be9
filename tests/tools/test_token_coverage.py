"""tools/analysis/token_coverage.py: the share of the kept tokens that lie
on the ground-truth actors, on a tiny EVAD over a generated toy set."""
import json
import math
import os.path as osp

import numpy as np
import pytest

from tests.conftest import (REPO, TINY_TOY_MODEL, TOY_DATA_CONFIG,
                            load_tool, random_checkpoint)

cov = load_tool('analysis', 'token_coverage')

# the toy config, smaller: 64 px short side, 4 slices of 4 x 6 tokens
TINY = TOY_DATA_CONFIG + '''
''' + TINY_TOY_MODEL + '''
val_dataloader['dataset']['pipeline'] = pipeline
'''


def test_on_actor_positions_use_patch_centres():
    # 2 x 3 patches of 16 px: centres at x 8, 24, 40 and y 8, 24
    mask = cov.on_actor_positions(np.array([[0, 0, 20, 20]]), (2, 3), 16)
    assert mask.tolist() == [True, False, False, False, False, False]
    mask = cov.on_actor_positions(
        np.array([[0, 0, 20, 20], [16, 16, 48, 32]]), (2, 3), 16)
    assert mask.tolist() == [True, False, False, False, True, True]
    assert not cov.on_actor_positions(np.zeros((0, 4)), (2, 3), 16).any()


def test_count_clip():
    # grid (2, 1, 2): positions 0, 1 are slice 0, 2, 3 the keyframe slice 1
    counts = cov.count_clip([np.array([0, 2, 3]), np.array([2, 3])],
                            np.array([True, False]), (2, 1, 2))
    assert counts[0] == dict(clips=1, kept_other=1, kept_other_on_actor=1,
                             all_other=2, all_other_on_actor=1,
                             kept_keyframe=2, all_keyframe=2)
    assert counts[1]['kept_other'] == 0
    rows = cov.summarize(counts, (3, 5))
    assert [r['block'] for r in rows] == [3, 5]
    assert rows[0]['on actors, kept'] == 1.
    assert rows[0]['on actors, all'] == .5
    assert rows[0]['actor tokens kept'] == 1.
    assert math.isnan(rows[1]['on actors, kept'])  # nothing kept
    assert rows[1]['actor tokens kept'] == 0.


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp('token_coverage')
    load_tool('make_toy_ava').make_toy_ava(
        str(root / 'data'), videos=4, seconds=5, seed=1)
    config = root / 'tiny.py'
    config.write_text(
        TINY.format(base=osp.join(REPO, 'configs', 'evad_toy_ava.py'),
                    data=str(root / 'data')))
    checkpoint = random_checkpoint(config, root / 'tiny.pth')
    return str(config), checkpoint


def run(files, capsys, *options):
    """The rows of a run over the first 3 clips; the token grid."""
    assert cov.main([*files, '--max-clips', '3', '--json', *options]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return out['rows'], out['grid']


def test_keyframe_pruning_counts(files, capsys):
    rows, (t, h, w) = run(files, capsys)
    # 160x128 frames at 64 px short side, padded to 96x64 (size_divisor)
    assert (t, h, w) == (4, 4, 6)
    assert [r['block'] for r in rows] == [1, 2]
    assert all(r['clips'] == 3 for r in rows)
    assert all(r['keyframe kept'] == 1. for r in rows)
    # ceil(0.7 * N) tokens after each block, the h*w keyframe tokens first
    total = t * h * w
    for row in rows:
        total = math.ceil(0.7 * total)
        assert row['kept'] == total - h * w
    assert rows[1]['actor tokens kept'] <= rows[0]['actor tokens kept']
    assert 0 < rows[0]['on actors, all'] < 1


def test_nothing_pruned_keeps_every_actor_token(files, capsys):
    rows, (t, h, w) = run(files, capsys, '--keep-rate', '1')
    for row in rows:
        assert row['kept'] == (t - 1) * h * w
        assert row['actor tokens kept'] == 1.
        assert row['on actors, kept'] == pytest.approx(row['on actors, all'])


def test_strategies_share_the_ground_truth(files, capsys):
    keyframe, _ = run(files, capsys)
    random, _ = run(files, capsys, '--cfg-options',
                    'model.backbone.pruning=random')
    again, _ = run(files, capsys, '--cfg-options',
                   'model.backbone.pruning=random')
    unified, _ = run(files, capsys, '--cfg-options',
                     'model.backbone.pruning=unified')
    assert random == again  # seeded
    for rows in (random, unified):
        assert [r['on actors, all'] for r in rows] == \
            [r['on actors, all'] for r in keyframe]
    assert [r['kept'] for r in random] == [r['kept'] for r in keyframe]
    assert all(r['keyframe kept'] <= 1. for r in unified)


def test_bad_input(files, tmp_path, capsys):
    config, checkpoint = files
    assert cov.main([config, str(tmp_path / 'none.pth')]) == 1
    assert 'checkpoint not found' in capsys.readouterr().err
    assert cov.main([str(tmp_path / 'none.py'), checkpoint]) == 1
    assert 'config file not found' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cov.main([config, checkpoint, '--max-clips', '0'])
