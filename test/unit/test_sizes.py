"""Code stays readable in small pieces: node files are wiring (~250 lines), and no function in
the packages runs past ~60 lines (STYLE.md). Read from the syntax tree."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ('colvlm_msgs', 'colvlm_models', 'colvlm_edge', 'colvlm_server', 'colvlm_bench')
MAX_FUNCTION_LINES = 60
MAX_NODE_LINES = 250


def long_functions(path: Path, limit: int, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    return [f'{path.relative_to(root)}:{node.lineno} {node.name} '
            f'({node.end_lineno - node.lineno + 1} lines)'
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > limit]


def test_no_function_in_the_packages_runs_past_sixty_lines():
    found = [entry for package in PACKAGES for path in sorted((ROOT / package).rglob('*.py'))
             for entry in long_functions(path, MAX_FUNCTION_LINES)]
    assert found == []


def test_node_files_are_wiring():
    for node in ('colvlm_edge/node.py', 'colvlm_server/node.py'):
        assert len((ROOT / node).read_text().splitlines()) <= MAX_NODE_LINES, node


def test_the_length_reader_counts_a_function_whole(tmp_path):
    source = tmp_path / 'probe.py'
    source.write_text('def long():\n' + '    x = 1\n' * 61)
    assert long_functions(source, MAX_FUNCTION_LINES, tmp_path) == ['probe.py:1 long (62 lines)']
    assert long_functions(source, 62, tmp_path) == []
