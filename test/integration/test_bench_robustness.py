"""tools.bench_robustness: the robustness table's shape, its values and its plot, from a quick
run of the bundled model on one image per cell."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from tools.bench_robustness import (
    CLEAN,
    FULL,
    POLICIES,
    TEXT_SIZE,
    TYPEFACE,
    cells,
    costliest,
    main,
)


def test_a_quick_run_writes_the_table_and_the_plot(tmp_path, capsys):
    out = tmp_path / 'robustness'
    assert main(['--out', str(out), '--quick', '--factors', 'blur,jpeg',
                 '--severities', '3']) == 0
    printed = capsys.readouterr().out
    rows = json.loads((out / 'robustness.json').read_text())
    # clean, blur-3, jpeg-3, camera; each under every policy.
    expected = [(CLEAN, 0), ('blur', 3), ('jpeg', 3), (FULL, 0)]
    assert [(r['factor'], r['severity'], r['policy']) for r in rows] == [
        (factor, severity, policy) for factor, severity in expected for policy in POLICIES]
    for row in rows:
        assert row['n'] > 0
        for key in ('accuracy', 'accuracy_text', 'accuracy_color', 'accuracy_presence'):
            assert row[key] is None or 0.0 <= row[key] <= 1.0, row
        assert row['accuracy'] is not None
    with open(out / 'robustness.csv', newline='') as stream:
        assert len(list(csv.DictReader(stream))) == len(rows)
    assert (out / 'robustness.png').stat().st_size > 0
    assert 'costs most: ' in printed and '| blur |' in printed
    for name in ('clean', 'blur-3', 'jpeg-3', 'camera'):
        assert len(list((out / 'data' / name / 'images').iterdir())) == 1


def test_cells_start_clean_and_end_with_the_full_style():
    rows = cells(['noise', 'color'], [2])
    assert [(factor, severity) for factor, severity, _ in rows] == [
        (CLEAN, 0), ('noise', 2), ('color', 2), (FULL, 0)]
    assert rows[0][2].factors == () and rows[1][2].factors == ('noise',)


def test_the_typeface_row_letters_a_growing_share_of_signs_in_truetype_faces():
    rows = cells([TYPEFACE], [1, 2, 3])
    styles = [style for factor, _, style in rows if factor == TYPEFACE]
    assert [s.truetype for s in styles] == [0.3333, 0.6667, 1.0]
    for style in styles:  # the mildest Hershey fonts for the rest, every TrueType family
        assert style.factors == ('fonts',)
        assert set(style.typefaces) == {'dejavu', 'stix', 'computer-modern'}
        assert style.fonts == cells(['fonts'], [1])[1][2].fonts


def test_the_text_size_row_draws_smaller_sign_text_at_each_severity():
    from colvlm_bench.glyphvqa.camera import CameraStyle
    from colvlm_bench.glyphvqa.drawing import ink_height
    from colvlm_bench.glyphvqa.lettering import make_sign
    rows = [(severity, style) for factor, severity, style in cells([TEXT_SIZE], [1, 2, 3])
            if factor == TEXT_SIZE]
    assert [severity for severity, _ in rows] == [1, 2, 3]
    tallest = []
    for severity, style in rows:
        assert style.factors == ('fonts',) and style.truetype == 0.0
        rng = np.random.default_rng(severity)
        heights = [ink_height(make_sign(rng, rng, style).alpha) for _ in range(20)]
        low, high = style.text_height
        assert low <= min(heights) and max(heights) <= high < CameraStyle().text_height[0]
        tallest.append(high)
    assert tallest == sorted(tallest, reverse=True)


def test_the_costliest_factor_has_the_largest_mean_drop():
    rows = [{'factor': CLEAN, 'severity': 0, 'policy': 'entropy', 'accuracy': 0.9},
            {'factor': 'blur', 'severity': 1, 'policy': 'entropy', 'accuracy': 0.8},
            {'factor': 'blur', 'severity': 3, 'policy': 'entropy', 'accuracy': 0.6},
            {'factor': 'noise', 'severity': 1, 'policy': 'entropy', 'accuracy': 0.5},
            {'factor': 'noise', 'severity': 3, 'policy': 'entropy', 'accuracy': 0.7},
            {'factor': 'noise', 'severity': 3, 'policy': 'global', 'accuracy': 0.0},
            {'factor': FULL, 'severity': 0, 'policy': 'entropy', 'accuracy': 0.1}]
    factor, drop = costliest(rows, 'entropy')
    assert factor == 'noise' and drop == pytest.approx(0.3)
    assert costliest(rows[:1], 'entropy') is None


@pytest.mark.parametrize('flags', [['--factors', 'zoom'], ['--severities', '4'],
                                   ['--policies', 'always'], ['--n-images', '0']])
def test_bad_flags_stop_before_any_work(tmp_path, flags):
    with pytest.raises(SystemExit) as stop:
        main(['--out', str(tmp_path / 'x'), *flags])
    assert stop.value.code == 2 and not (tmp_path / 'x').exists()


def _run(folder, rows):
    folder.mkdir(parents=True)
    (folder / 'robustness.json').write_text(json.dumps(rows))
    return str(folder)


def _row(factor, severity, policy, accuracy):
    return {'factor': factor, 'severity': severity, 'policy': policy, 'accuracy': accuracy,
            'n': 4, 'accuracy_text': None, 'accuracy_color': accuracy,
            'accuracy_presence': None}


def test_merge_joins_runs_split_by_factor_into_one_table(tmp_path, capsys):
    refs = [_row(f, 0, p, a) for f, a in ((CLEAN, 1.0), (FULL, 0.5))
            for p in ('global', 'entropy')]
    first = _run(tmp_path / 'a', refs[:2] + [_row('blur', 1, p, 0.75)
                                             for p in ('global', 'entropy')] + refs[2:])
    second = _run(tmp_path / 'b', refs[:2] + [_row('noise', 1, p, 0.25)
                                              for p in ('global', 'entropy')] + refs[2:])
    out = tmp_path / 'joined'
    assert main(['--out', str(out), '--merge', first, second]) == 0
    rows = json.loads((out / 'robustness.json').read_text())
    assert sorted((r['factor'], r['policy']) for r in rows) == sorted(
        (f, p) for f in (CLEAN, FULL, 'blur', 'noise') for p in ('global', 'entropy'))
    assert (out / 'robustness.png').stat().st_size > 0
    assert 'costs most: noise (mean drop 75.0 points' in capsys.readouterr().out


def test_merge_refuses_runs_that_disagree_on_a_reference_cell(tmp_path):
    first = _run(tmp_path / 'a', [_row(CLEAN, 0, 'entropy', 1.0)])
    second = _run(tmp_path / 'b', [_row(CLEAN, 0, 'entropy', 0.9)])
    with pytest.raises(SystemExit, match=r"b/robustness.json differs from an earlier run on "
                                         r"cell \('clean', 0, 'entropy'\)"):
        main(['--out', str(tmp_path / 'joined'), '--merge', first, second])
    with pytest.raises(SystemExit, match=r'missing/robustness.json does not exist'):
        main(['--out', str(tmp_path / 'joined'), '--merge', str(tmp_path / 'missing')])
