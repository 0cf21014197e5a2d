"""Test files keep unique names across the tiers: pytest imports them by basename (the test
folders are not packages), so a second test_x.py in another tier fails the whole collection."""

from collections import Counter
from pathlib import Path

TEST_ROOT = Path(__file__).resolve().parents[1]


def test_no_two_test_files_share_a_name():
    names = Counter(path.name for path in TEST_ROOT.rglob('test_*.py'))
    assert [name for name, count in names.items() if count > 1] == []
