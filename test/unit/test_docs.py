"""The documentation: a short README that links only inside the repository, guide pages whose
parameter tables are the nodes' own, and a rosdoc2 build without warnings or network."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
import re
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[2]
README_LIMIT = 15000  # bytes: the front door, everything else lives in docs/
LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)\)')
PAGES = sorted((ROOT / 'docs').glob('*.md'))


def load_param_tables():
    path = ROOT / 'docs' / 'param_tables.py'
    spec = importlib.util.spec_from_file_location('param_tables', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def broken_links(text: str, folder: Path) -> list[str]:
    """Links of markdown `text` in `folder` that leave the repository or name no file in it."""
    broken = []
    for target in LINK.findall(text):
        path = target.split('#', 1)[0]
        if re.match(r'[a-z][a-z0-9+.-]*:', target) or target.startswith('/'):
            broken.append(f'{target} (outside the repository)')
            continue
        if not path:
            continue  # an anchor on the same page
        resolved = (folder / path).resolve()
        if not resolved.is_relative_to(ROOT):
            broken.append(f'{target} (outside the repository)')
        elif not resolved.is_file():
            broken.append(f'{target} (no such file)')
    return broken


def test_readme_is_a_short_front_door():
    size = len((ROOT / 'README.md').read_bytes())
    assert size <= README_LIMIT, f'README.md is {size} bytes; move detail into docs/'
    text = (ROOT / 'README.md').read_text()
    # What a first hour needs: colvlm on PATH, a question aimed at one picture, and the way
    # into the docs.
    for needed in ('source .venv/bin/activate', 'bash tools/dev.sh shell', '--image',
                   'colcon build', 'rosdoc2 build --package-path .', '(docs/'):
        assert needed in text, needed
    assert 'pip install -r <(' not in text


@pytest.mark.parametrize('page', [ROOT / 'README.md', *PAGES], ids=lambda p: p.name)
def test_links_resolve_inside_the_repository(page):
    broken = broken_links(page.read_text(), page.parent)
    assert not broken, f'{page.name}: {broken}'


def test_link_check_catches_what_a_clone_lacks():
    text = ('[a](../../shared/seeds/001) [b](missing.md) [c](https://x.org) '
            '[d](results.md#glyph-vqa-held-out-split) [e](#here) ![f](token-layers.png)\n')
    assert [link.split(' ')[0] for link in broken_links(text, ROOT / 'docs')] == [
        '../../shared/seeds/001', 'missing.md', 'https://x.org']


@pytest.mark.parametrize('page', ['README.md', 'docs/results.md',
                                  'models/colvlm-tiny-llava/README.md'])
def test_results_name_the_calibrated_threshold(page):
    text = (ROOT / page).read_text()
    assert 'τ=0.005 ' not in text and 'τ = 0.005 ' not in text and 'τ=0.005)' not in text
    from colvlm_models.settings import model_settings
    assert f"{model_settings('bundled')['gate.threshold']:g}" in text


def test_configuration_page_tables_are_the_nodes_own():
    # The tables are EDGE_PARAMETERS.markdown() / SERVER_PARAMETERS.markdown() verbatim, so a
    # changed default (a recalibrated gate.threshold), range or description cannot go stale.
    param_tables = load_param_tables()
    page = param_tables.PAGE.read_text()
    tables = param_tables.tables()
    for node, table in tables.items():
        stale = [row for row in table.splitlines() if f'\n{row}\n' not in page]
        assert not stale, (f'docs/configuration.md {node} parameter rows differ from the '
                           f'table: {stale}; run: python docs/param_tables.py')
    assert param_tables.render(page, tables) == page, 'run: python docs/param_tables.py'


def test_regenerating_replaces_a_stale_table():
    param_tables = load_param_tables()
    tables = {'edge': '| a |\n| b |', 'server': '| c |'}
    stale = ('x\n<!-- parameters: edge (generated) -->\n| old |\n<!-- end parameters -->\n'
             '<!-- parameters: server (generated) -->\n<!-- end parameters -->\n')
    assert param_tables.render(stale, tables) == (
        'x\n<!-- parameters: edge (generated) -->\n| a |\n| b |\n<!-- end parameters -->\n'
        '<!-- parameters: server (generated) -->\n| c |\n<!-- end parameters -->\n')


def test_docstrings_become_safe_restructured_text():
    sys.path.insert(0, str(ROOT / 'docs'))
    try:
        from docstrings import rest_safe
    finally:
        sys.path.remove(str(ROOT / 'docs'))
    lines = rest_safe(['Two signals:', '- **lexical**: `Frame`s, RIHS01_ and |error|', '  on',
                       'After.'])
    assert lines == ['Two signals:', '', '- **lexical**: `Frame`\\ s, RIHS01\\_ and \\|error\\|',
                     '  on', '', 'After.']


@pytest.mark.skipif(importlib.util.find_spec('rosdoc2') is None,
                    reason='rosdoc2 is not installed (pip install rosdoc2 myst-parser)')
def test_rosdoc2_builds_the_docs_without_warnings(tmp_path):
    # rosdoc2 runs sphinx-apidoc by name, from the interpreter's own bin/ folder.
    env = dict(os.environ, PATH=f'{Path(sys.executable).parent}{os.pathsep}{os.environ["PATH"]}',
               PYTHONPATH=str(ROOT), HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1',
               # No network: anything that tries to fetch goes to a closed local port.
               http_proxy='http://127.0.0.1:9', https_proxy='http://127.0.0.1:9',
               HTTP_PROXY='http://127.0.0.1:9', HTTPS_PROXY='http://127.0.0.1:9')
    out = tmp_path / 'out'
    command = [sys.executable, '-c', 'import sys; from rosdoc2.main import main; sys.exit(main())',
               'build', '--package-path', str(ROOT), '--output-directory', str(out),
               '--doc-build-directory', str(tmp_path / 'build'),
               '--cross-reference-directory', str(tmp_path / 'xref')]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    problems = [line for line in log.splitlines()
                if re.search(r'\b(WARNING|ERROR|CRITICAL)\b', line) and '[INFO]' not in line]
    assert not problems, '\n'.join(problems[:20])
    html = out / 'colvlm'
    for page in ['index', 'configuration', 'results', 'model-card', 'colvlm_msgs.params',
                 'colvlm_server.gate', 'colvlm_edge.node', 'colvlm_bench.evaluate']:
        assert (html / f'{page}.html').is_file(), page
    assert 'gate.threshold' in (html / 'configuration.html').read_text()
