"""tools.bench_docs: the docs' measurements as one list of steps, run one at a time."""

from __future__ import annotations

import importlib.util
from pathlib import Path
import subprocess
import sys

import pytest

from tools import bench_docs

COLVLM = (sys.executable, '-m', 'colvlm_bench.cli')  # as environment() falls back to it


def _help(argv: list[str]) -> str:
    """The --help text of a step's command (the subcommand's, for colvlm)."""
    if argv[0] == 'colvlm':
        words = [w for w in argv[1:3] if not w.startswith(('-', 'out/'))]
        command = [*COLVLM, *words]
    else:
        command = [sys.executable, '-m', argv[2]]
    done = subprocess.run([*command, '--help'], capture_output=True, text=True, timeout=120,
                          cwd=Path(bench_docs.__file__).parents[1])
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_command_names_a_tool_and_flags_that_exist():
    seen = {}
    for step in bench_docs.STEPS:
        for command in step.commands:
            argv = bench_docs.expand(command, Path('out/bench'))
            if argv[0] == 'python':
                assert argv[1] == '-m' and importlib.util.find_spec(argv[2]), argv
            else:
                assert argv[0] == 'colvlm', argv
            key = tuple(argv[:3])
            seen.setdefault(key, _help(argv))
            flags = [w for w in argv if w.startswith('--')]
            missing = [f for f in flags if f not in seen[key]]
            assert not missing, f'{step.name}: {argv[:3]} has no {missing}'


def test_a_second_run_draws_its_splits_again_over_the_first(tmp_path):
    # The held-out splits' dataset commands, shrunk to 2 images, run twice into one folder:
    # a rerun of the bench must not stop at the split an earlier run left there.
    step = next(s for s in bench_docs.STEPS if s.name == 'heldout')
    datasets = [c for c in step.commands if 'dataset' in c]
    assert len(datasets) == 3  # camera, camera with pose, clean
    for command in datasets:
        argv = list(bench_docs.expand(command, tmp_path))
        argv[argv.index('--n-images') + 1] = '2'
        for _ in range(2):
            done = subprocess.run([*COLVLM, *argv[1:]], capture_output=True, text=True,
                                  timeout=300, cwd=Path(bench_docs.__file__).parents[1])
            assert done.returncode == 0, done.stderr
        assert any(Path(argv[3]).iterdir())


def test_list_prints_each_step_and_runs_nothing(tmp_path, capsys):
    out = tmp_path / 'bench'
    assert bench_docs.main(['--list', '--out', str(out)]) == 0
    text = capsys.readouterr().out
    for step in bench_docs.STEPS:
        assert f'{step.name}: ' in text
    assert 'linkbench: docs/lossy-links.md' in text and '[root]' in text
    assert not out.exists()


def test_colvlm_is_the_venv_command_or_else_its_module(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, 'executable', str(tmp_path / 'python'))
    assert bench_docs.environment()[1] == (str(tmp_path / 'python'), '-m', 'colvlm_bench.cli')
    (tmp_path / 'colvlm').touch()
    assert bench_docs.environment()[1] == (str(tmp_path / 'colvlm'),)
    assert bench_docs.expand(('{colvlm}', 'eval', '{out}/d'), Path('o'), 'py', ('a', 'b')) == \
        ['a', 'b', 'eval', 'o/d']


def test_only_picks_in_the_given_order_and_names_unknown_steps():
    assert [s.name for s in bench_docs.pick('views,accel')] == ['views', 'accel']
    with pytest.raises(ValueError, match=r'unknown step\(s\) nope; the steps are heldout'):
        bench_docs.pick('accel,nope')


def test_a_failing_command_stops_its_step_and_is_logged(tmp_path):
    step = bench_docs.Step('probe', 'nowhere', (
        ('{python}', '-c', 'print("first")'),
        ('{python}', '-c', 'import sys; sys.exit(3)'),
        ('{python}', '-c', 'print("never")')))
    outcome, _ = bench_docs.run_step(step, tmp_path, sys.executable, COLVLM)
    assert outcome.startswith('failed: exit 3 from python -c')
    log = (tmp_path / 'probe.log').read_text()
    assert 'first' in log and 'never' not in log


def test_a_root_step_without_root_is_skipped_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_docs, 'root_missing', lambda: 'needs root (test)')
    step = bench_docs.Step('link', 'nowhere', (('{python}', '-c', 'raise SystemExit(9)'),),
                           needs_root=True)
    assert bench_docs.run_step(step, tmp_path, sys.executable, COLVLM) == \
        ('skipped: needs root (test)', 0.0)
    assert not (tmp_path / 'link.log').exists()


def test_main_runs_the_picked_steps_and_sums_them_up(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench_docs, 'STEPS', (
        bench_docs.Step('fine', 'a page', (('{python}', '-c', 'print(1)'),)),
        bench_docs.Step('broken', 'a page', (('{python}', '-c', 'raise SystemExit(4)'),)),
        bench_docs.Step('link', 'a page', (('{python}', '-c', 'print(2)'),), needs_root=True)))
    monkeypatch.setattr(bench_docs, 'root_missing', lambda: 'needs root (test)')
    monkeypatch.setattr(bench_docs, 'environment', lambda: (sys.executable, COLVLM))
    assert bench_docs.main(['--out', str(tmp_path / 'b')]) == 1
    out = capsys.readouterr().out
    assert 'bench: 1 ok, 1 failed, 1 skipped' in out
    assert bench_docs.main(['--out', str(tmp_path / 'b'), '--only', 'fine']) == 0
