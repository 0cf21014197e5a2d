"""The package layers hold: imports only point down, and no module imports itself back.

wire (colvlm_msgs) <- models (colvlm_models) <- edge | server <- benchmark and command
(colvlm_bench). The edge and the server never import each other, so a camera board runs the
edge without the server installed. Every import counts, also those inside functions: a lazy
import is still a dependency. Read from the syntax tree, so nothing is imported here.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What each package may import of the others.
ALLOWED = {
    'colvlm_msgs': set(),
    'colvlm_models': {'colvlm_msgs'},
    'colvlm_edge': {'colvlm_msgs', 'colvlm_models'},
    'colvlm_server': {'colvlm_msgs', 'colvlm_models'},
    'colvlm_bench': {'colvlm_msgs', 'colvlm_models', 'colvlm_edge', 'colvlm_server'},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for package in ALLOWED
            for path in sorted((ROOT / package).rglob('*.py'))}


def imported_modules(path: Path, known: dict[str, Path]) -> set[str]:
    """The colvlm modules a file imports: `from a.b import c` is a.b.c when that is a module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                child = f'{node.module}.{alias.name}'
                found.add(child if child in known else node.module)
    return {name for name in found if name.split('.')[0] in ALLOWED}


def import_graph() -> dict[str, set[str]]:
    known = package_modules()
    return {name: imported_modules(path, known) for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), or a self-import."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_package_imports_only_the_layers_below_it():
    wrong = []
    for module, targets in import_graph().items():
        package = module.split('.')[0]
        for target in sorted(targets):
            other = target.split('.')[0]
            if other != package and other not in ALLOWED[package]:
                wrong.append(f'{module} imports {target}')
    assert wrong == []


def test_no_module_imports_itself_back():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize('graph, expected', [
    ({'a': {'b'}, 'b': {'a'}, 'c': {'a'}}, [['a', 'b']]),
    ({'a': {'b'}, 'b': {'c'}, 'c': set()}, []),
    ({'a': {'a'}}, [['a']]),
])
def test_the_cycle_finder_finds_cycles_and_only_those(graph, expected):
    assert cycles(graph) == expected


def test_the_import_reader_sees_lazy_imports_inside_functions(tmp_path):
    source = tmp_path / 'lazy.py'
    source.write_text('def run():\n    from colvlm_server.node import ServerNode\n')
    known = {'colvlm_server.node': Path('node.py')}
    assert imported_modules(source, known) == {'colvlm_server.node'}
