"""ruff over the whole tree: 99 columns, single quotes, sorted imports (pyproject.toml)."""

from __future__ import annotations

from pathlib import Path
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_finds_nothing():
    # ruff is a test extra (.[test], what CI installs), not a rosdep key the colcon way brings.
    pytest.importorskip('ruff', reason='ruff is not installed (pip install ruff, or '
                        "pip install -e '.[test]')")
    result = subprocess.run([sys.executable, '-m', 'ruff', 'check', '--no-cache', str(ROOT)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
