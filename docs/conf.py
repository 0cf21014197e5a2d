"""Sphinx settings for the colvlm docs; rosdoc2 wraps this file (see rosdoc2.yaml).

Build with `rosdoc2 build --package-path .` from the repository root: rosdoc2 runs
sphinx-apidoc for the API pages (`modules`) and adds autodoc, intersphinx (no remote
inventories here, so no network) and myst_parser to the extensions below.
"""

import os
import re
import sys


def _repository_root():
    # rosdoc2 runs a generated conf.py that exec()s this file from its original place, so
    # __file__ is the generated one's; its text names this file's path.
    here = os.path.dirname(os.path.abspath(__file__))
    if not os.path.isfile(os.path.join(here, '..', 'package.xml')):
        with open(__file__) as generated:
            found = re.search(r'exec\(open\("(.+?)"\)', generated.read())
        if found:
            here = os.path.dirname(found.group(1))
    return os.path.abspath(os.path.join(here, '..'))


ROOT = _repository_root()
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'docs'))

from docstrings import process_docstring  # noqa: E402

project = 'colvlm'
author = 'colvlm developers'
copyright = 'colvlm developers. License: Apache-2.0'
master_doc = 'index'
extensions = ['myst_parser']
source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
exclude_patterns = ['_build']
html_theme = 'sphinx_rtd_theme'
myst_heading_anchors = 3
myst_enable_extensions = ['colon_fence']
autodoc_default_options = {'members': True, 'undoc-members': False}
# No network: intersphinx gets no remote inventories.
intersphinx_mapping = {}
# Docstrings write `name` for code, as the markdown pages do.
default_role = 'code'
# Re-exports (colvlm_bench.glyphvqa.Scene) and same-named fields make autodoc's type
# cross-references ambiguous; they still resolve to one of the candidates.
suppress_warnings = ['ref.python']
# rosdoc2 copies README.md and package.xml beside these pages; the guide is what renders.
exclude_patterns += ['standards.rst', '__readme_include.rst', 'standard_docs']
rosdoc2_settings = {'enable_breathe': False, 'enable_exhale': False}

# The API pages: rosdoc2 runs sphinx-apidoc over the repository root (rosdoc2.yaml) before
# Sphinx reads this file, so any folder with an __init__.py (tools/, test/) gets pages too.
# Keep the five packages only, listed in this order.
PACKAGES = ['colvlm_msgs', 'colvlm_models', 'colvlm_edge', 'colvlm_server', 'colvlm_bench']
_confdir = os.path.dirname(os.path.abspath(__file__))
if os.path.isfile(os.path.join(_confdir, 'modules.rst')):
    with open(os.path.join(_confdir, 'modules.rst'), 'w') as _modules:
        _modules.write('Python API\n==========\n\n.. toctree::\n   :maxdepth: 4\n\n'
                       + ''.join(f'   {name}\n' for name in PACKAGES))
    exclude_patterns += [
        name for name in os.listdir(_confdir)
        if name.endswith('.rst') and name.count('.') >= 1 and name != 'modules.rst'
        and name.split('.')[0] not in PACKAGES + ['index', 'changelog', 'standards']
        and not name.startswith('__')]

# Pages whose text lives elsewhere in the repository, read at build time (rosdoc2 builds
# from a copy of this folder, so a relative include would not reach them).
INCLUDED = {
    'architecture': os.path.join(ROOT, 'DESIGN.md'),
    'model-card': os.path.join(ROOT, 'models', 'colvlm-tiny-llava', 'README.md'),
    'changelog': os.path.join(ROOT, 'CHANGELOG.rst'),
}


def _include_repository_file(app, docname, source):
    if docname in INCLUDED:
        with open(INCLUDED[docname], encoding='utf-8') as text:
            source[0] = text.read()


def setup(app):
    app.connect('source-read', _include_repository_file)
    app.connect('autodoc-process-docstring', process_docstring)
