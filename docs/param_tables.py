"""Regenerate the parameter tables in docs/configuration.md from the nodes' own tables.

    python docs/param_tables.py          # rewrite the tables in place
    python docs/param_tables.py --check  # exit 1 when they are stale

Each table sits between a pair of marker comments naming its node; everything between them
is replaced by `EDGE_PARAMETERS.markdown()` / `SERVER_PARAMETERS.markdown()`, so a changed
default, range or description cannot leave the page stale (test/unit/test_docs.py checks).
"""

from __future__ import annotations

from pathlib import Path
import re
import sys

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / 'docs' / 'configuration.md'
BLOCK = re.compile(
    r'(<!-- parameters: (?P<node>\w+) \(generated\) -->\n)(?P<body>.*?)(<!-- end parameters -->)',
    re.S)


def tables() -> dict[str, str]:
    """Each node's parameter table as markdown, keyed by node name."""
    sys.path.insert(0, str(ROOT))
    from colvlm_edge.parameters import EDGE_PARAMETERS
    from colvlm_server.parameters import SERVER_PARAMETERS

    return {'edge': EDGE_PARAMETERS.markdown(), 'server': SERVER_PARAMETERS.markdown()}


def render(text: str, generated: dict[str, str]) -> str:
    """The page with every marked block replaced by its node's table."""
    nodes = [m.group('node') for m in BLOCK.finditer(text)]
    if sorted(nodes) != sorted(generated):
        raise SystemExit(f'{PAGE.name}: marked tables {nodes}, expected {sorted(generated)}')
    return BLOCK.sub(
        lambda m: f'{m.group(1)}{generated[m.group("node")].rstrip()}\n{m.group(4)}', text)


def main(argv: list[str]) -> int:
    text = PAGE.read_text()
    fresh = render(text, tables())
    if '--check' in argv:
        return 0 if fresh == text else 1
    PAGE.write_text(fresh)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
