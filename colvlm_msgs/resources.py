"""Where colvlm's run-time files (config/, models/) live, however it was installed.

colcon installs them under the ament share directory; `pip install -e .` leaves them in the
source tree; a wheel puts config/ under `<prefix>/share/colvlm`. The first that has the
file wins.
"""

from __future__ import annotations

import os
from pathlib import Path
import sys

PACKAGE = 'colvlm'
_SOURCE_ROOT = Path(__file__).resolve().parent.parent


def share_directories() -> list[Path]:
    """Candidate share directories, most specific first."""
    candidates = []
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
        try:
            candidates.append(Path(get_package_share_directory(PACKAGE)))
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    if (_SOURCE_ROOT / 'package.xml').is_file():
        candidates.append(_SOURCE_ROOT)
    candidates.append(Path(sys.prefix) / 'share' / PACKAGE)
    extra = os.environ.get('COLVLM_SHARE')
    if extra:
        candidates.insert(0, Path(extra))
    return candidates


def find(relative: str) -> Path:
    """The path of a shipped file, e.g. find('config/qos.yaml'); FileNotFoundError if none."""
    for directory in share_directories():
        path = directory / relative
        if path.exists():
            return path
    searched = ', '.join(str(d) for d in share_directories())
    raise FileNotFoundError(f'{relative} not found in the colvlm share directories ({searched})')
