"""Docstrings in the house style (markdown-like prose) made safe for reStructuredText.

The packages' docstrings write `name` for code, '- ' lists right after a sentence and names
such as RIHS01_ or |error|, which reST would read as references, substitutions or broken
markup. `rest_safe` escapes those outside backticks and adds the blank lines reST wants
around lists, so that a docstring can never fail the docs build; conf.py connects it to
autodoc-process-docstring.
"""

from __future__ import annotations

import re

# A name ending in '_', a '|' and a '*' that is not part of a **bold** pair.
_SPECIAL = re.compile(r'(\w)_(?=\W|$)|(\||(?<!\*)\*(?!\*))')
_LIST = re.compile(r'\s*([-*]|\d+\.)\s')


def _escape(text: str) -> str:
    unpaired = text.count('**') % 2
    if unpaired:  # no bold here: escape every star
        text = text.replace('**', '\0')
    text = _SPECIAL.sub(lambda m: f'{m.group(1)}\\_' if m.group(1) else f'\\{m.group(2)}', text)
    return text.replace('\0', '\\*\\*') if unpaired else text


def escape_line(line: str) -> str:
    """The line with reST markup escaped outside `code` spans, which stay literal."""
    parts = line.split('`')
    if len(parts) % 2 == 0:  # an unpaired backtick: nothing in the line is code
        return _escape(line).replace('`', '\\`')
    out = []
    for index, part in enumerate(parts):
        if index % 2:
            out.append(f'`{part}`')
            continue
        text = _escape(part)
        if index > 0 and text[:1].isalnum():
            text = '\\ ' + text  # `Frame`s: a span must end before a letter
        if index < len(parts) - 1 and text[-1:].isalnum():
            text += '\\ '
        out.append(text)
    return ''.join(out)


def rest_safe(lines: list[str]) -> list[str]:
    """Escaped lines, with a blank line wherever a list starts or ends inside prose."""
    out: list[str] = []
    in_list = False
    for line in lines:
        is_item = bool(_LIST.match(line)) and not line.startswith('    ')
        blank = not line.strip()
        continued = in_list and line.startswith(' ') and not blank
        if out and out[-1].strip() and ((is_item and not in_list) or
                                         (in_list and not is_item and not continued)):
            out.append('')
        in_list = is_item or continued
        out.append(escape_line(line))
    return out


def process_docstring(app, what, name, obj, options, lines):
    """autodoc-process-docstring handler: rewrites `lines` in place."""
    lines[:] = rest_safe(lines)
