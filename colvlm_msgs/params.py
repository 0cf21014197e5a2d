"""Node parameters: one table per node, read from ROS 2 parameter YAML, checked at start-up.

A table lists every parameter once (name, type, default, description, range or choices), as
generate_parameter_library does. Values come from the table's defaults, then the YAML file
(`/**:` or `<node name>:` -> `ros__parameters:`, keys nested by concern or dotted), then
command-line overrides. A bad value stops start-up with one line naming the file, the key
and the value. `parse_ros_arguments` reads the `--ros-args` subset `ros2 run` and launch pass
(`-p`, `--params-file`, `-r __ns:=`, `-r __node:=`) for the backends rclpy does not serve.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from pathlib import Path
import re

import yaml

TYPES = ('bool', 'int', 'float', 'str', 'int_array', 'float_array', 'str_array')


class ParameterError(ValueError):
    """A parameter value or file that cannot be used."""


@dataclass(frozen=True)
class ParameterSpec:
    name: str                       # dotted, grouped by concern: 'gate.threshold'
    type: str                       # one of TYPES
    default: object
    description: str
    min: float | None = None        # inclusive, numbers only
    max: float | None = None        # inclusive, numbers only
    choices: tuple = ()             # allowed values, strings mostly

    def check(self, value: object, source: str) -> object:
        """The value converted to this parameter's type, or ParameterError."""
        where = f'{source}: {self.name}' if source else self.name
        converted = _convert(self.type, value)
        if converted is None:
            raise ParameterError(f'{where} must be {self.type}, got {value!r}')
        items = converted if self.type.endswith('_array') else [converted]
        for item in items:
            if self.choices and item not in self.choices:
                raise ParameterError(f'{where} must be one of {self.choices}, got {item!r}')
            if self.min is not None and item < self.min:
                raise ParameterError(f'{where} must be >= {self.min}, got {item!r}')
            if self.max is not None and item > self.max:
                raise ParameterError(f'{where} must be <= {self.max}, got {item!r}')
        return converted


def _convert(kind: str, value: object) -> object:
    if kind.endswith('_array'):
        if not isinstance(value, (list, tuple)):
            return None
        items = [_convert(kind[:-len('_array')], item) for item in value]
        return None if any(item is None for item in items) else tuple(items)
    if kind == 'bool':
        return value if isinstance(value, bool) else None
    if isinstance(value, bool):
        return None
    if kind == 'int':
        return value if isinstance(value, int) else None
    if kind == 'float':
        ok = isinstance(value, (int, float)) and math.isfinite(value)
        return float(value) if ok else None
    return value if isinstance(value, str) else None


def flatten(tree: dict, prefix: str = '') -> dict[str, object]:
    """{'gate': {'threshold': 1}} -> {'gate.threshold': 1}."""
    flat = {}
    for key, value in tree.items():
        name = f'{prefix}{key}'
        if isinstance(value, dict):
            flat.update(flatten(value, name + '.'))
        else:
            flat[name] = value
    return flat


def read_yaml(path: Path, node_name: str) -> dict[str, object]:
    """The flat parameters a ROS 2 parameter file gives to `node_name` (`/**` first).

    `node_name` may be fully qualified ('/camera/server', the key launch_ros writes for a
    node given a name and namespace); sections for its bare name apply too, as in rcl, and so
    do wildcard keys ('/**/server', '/cam*/server'). A file that is not node sections (flat
    keys, no `ros__parameters`) or has none for this node is refused, naming the file: rcl
    would ignore it in silence and the node would run on defaults.
    """
    path = Path(path)
    document = _load_parameter_file(path)
    sections = {}
    for key, section in document.items():
        if not isinstance(section, dict) or not isinstance(section.get('ros__parameters'),
                                                           dict):
            raise ParameterError(
                f'{path}: {key!r} is not a node section: expected a "ros__parameters" '
                'mapping under it (a ROS 2 parameter file reads "<node name>:" or "/**:", '
                'then "ros__parameters:", then the parameters)')
        sections[str(key)] = section['ros__parameters']
    short = node_name.rsplit('/', 1)[-1]
    exact = [key for key in dict.fromkeys((short, '/' + short, node_name)) if key in sections]
    wildcards = [key for key in sections if '*' in key and key not in exact
                 and _node_pattern(key).fullmatch('/' + node_name.lstrip('/'))]
    if sections and not exact and not wildcards:
        raise ParameterError(f'{path}: no section for node {node_name!r} (it has '
                             f'{", ".join(sorted(sections))}); name it "{short}:" or "/**:"')
    values: dict[str, object] = {}
    for key in sorted(wildcards, key=lambda key: key not in ('/**', '**')) + exact:
        values.update(flatten(sections[key]))
    return values


class _RosYamlLoader(yaml.SafeLoader):
    """yaml.SafeLoader that also reads a `!!python/tuple` sequence, as a list: launch_ros
    (Jazzy) writes a launch file's tuple parameter values with that tag into the parameter
    file (and `-p` values) it hands a node, and rcl reads them as plain sequences."""


_RosYamlLoader.add_constructor('tag:yaml.org,2002:python/tuple',
                               lambda loader, node: loader.construct_sequence(node))


def _yaml(text: str):
    return yaml.load(text, Loader=_RosYamlLoader)  # a SafeLoader: no arbitrary objects


def _load_parameter_file(path: Path) -> dict:
    try:
        document = _yaml(path.read_text(encoding='utf-8')) or {}
    except FileNotFoundError:
        raise ParameterError(f'{path}: parameter file not found') from None
    except yaml.YAMLError as error:
        mark = getattr(error, 'problem_mark', None)
        where = f':{mark.line + 1}:{mark.column + 1}' if mark is not None else ''
        why = getattr(error, 'problem', None) or str(error).splitlines()[0]
        raise ParameterError(f'{path}{where}: not valid YAML: {why}') from None
    except (OSError, UnicodeDecodeError) as error:
        raise ParameterError(f'{path}: cannot read: {error}') from None
    if not isinstance(document, dict):
        raise ParameterError(f'{path}: expected a mapping of node names')
    return document


def _node_pattern(key: str) -> re.Pattern:
    """rcl's node-name wildcards: '**' any number of name parts, '*' one part or its end."""
    parts = re.split(r'(\*\*|\*)', '/' + key.lstrip('/'))
    pattern = ''.join('.*' if part == '**' else '[^/]*' if part == '*' else re.escape(part)
                      for part in parts)
    return re.compile(pattern.replace('/.*/', '(?:/.*)?/'))  # '/**/x' matches '/x' too


class ParameterTable:
    """The parameters one node declares."""

    def __init__(self, specs: list[ParameterSpec]):
        self.specs = {spec.name: spec for spec in specs}
        for spec in specs:
            spec.check(spec.default, 'default')

    def resolve(self, file_values: dict[str, object] | None = None, source: str = '',
                overrides: dict[str, object] | None = None) -> dict[str, object]:
        """Defaults <- file values <- overrides, each checked; unknown names are errors."""
        values = {name: spec.default for name, spec in self.specs.items()}
        for layer, where in ((file_values or {}, source), (overrides or {}, 'override')):
            for name, value in layer.items():
                if name not in self.specs:
                    raise ParameterError(f'{where}: unknown parameter {name!r}')
                values[name] = self.specs[name].check(value, where)
        return values

    def markdown(self) -> str:
        """The table as the README shows it: parameter, type, default, range, description."""
        rows = ['| parameter | type | default | range | description |',
                '| --- | --- | --- | --- | --- |']
        for spec in self.specs.values():
            default = spec.default
            shown = (repr(list(default)) if isinstance(default, tuple)
                     else default if isinstance(default, str) and default else repr(default))
            rows.append(f'| `{spec.name}` | {spec.type} | `{shown}` | {_range(spec)} '
                        f'| {spec.description} |')
        return '\n'.join(rows)

    def load(self, path: Path | list | None, node_name: str,
             overrides: dict[str, object] | None = None,
             base: dict[str, object] | None = None) -> dict[str, object]:
        """Defaults <- `base` <- each file in order (a later one wins) <- overrides."""
        paths = [p for p in (path if isinstance(path, (list, tuple)) else [path]) if p]
        values: dict[str, object] = dict(self.resolve(base or {}, 'base')) if base else {}
        for each in paths:
            file_values = read_yaml(each, node_name)
            self.resolve(file_values, str(each))    # a bad key or value names its own file
            values.update(file_values)
        return self.resolve(values, str(paths[-1]) if paths else '', overrides)


def _range(spec: ParameterSpec) -> str:
    if spec.choices:
        return ' / '.join(str(choice) for choice in spec.choices)
    if spec.min is None and spec.max is None:
        return ''
    ends = ['' if end is None else f'{end:g}' if isinstance(end, float) else str(end)
            for end in (spec.min, spec.max)]
    return '..'.join(ends)


def parse_overrides(pairs: list[str]) -> dict[str, object]:
    """`-p NAME=VALUE` flags as {name: value}, each value read as YAML."""
    overrides = {}
    for pair in pairs:
        name, separator, value = pair.partition('=')
        if not separator or not name:
            raise ValueError(f'--param expects NAME=VALUE, got {pair!r}')
        overrides[name.strip()] = _yaml(value)
    return overrides


@dataclass(frozen=True)
class RosArguments:
    """What a `--ros-args` section asks of a node: its parameter files (in order), `-p`
    values, and the `__ns` / `__node` remappings ('' where not given)."""

    params_files: tuple = ()
    overrides: tuple = ()           # (name, value) pairs, a later one wins
    namespace: str = ''
    node_name: str = ''


def parse_ros_arguments(argv: list[str]) -> RosArguments:
    """The subset of `--ros-args ... [--]` sections colvlm honours without rclpy.

    rcl's other arguments (--log-level, topic remappings, enclaves) are left alone rather than
    refused, so a launch file's command line works unchanged on both backends.
    """
    files, overrides, namespace, node_name = [], [], '', ''
    inside, index = False, 0
    while index < len(argv):
        argument = argv[index]
        value = argv[index + 1] if index + 1 < len(argv) else None
        if argument == '--ros-args':
            inside = True
        elif inside and argument == '--':
            inside = False
        elif inside and argument in ('-p', '--param', '--params-file', '-r', '--remap'):
            if value is None:
                raise ParameterError(f'--ros-args: {argument} expects a value')
            index += 1
            if argument == '--params-file':
                files.append(value)
            elif argument in ('-p', '--param'):
                name, separator, text = value.partition(':=')
                if not separator or not name:
                    raise ParameterError(f'--ros-args: -p expects NAME:=VALUE, got {value!r}')
                overrides.append((name, _yaml(text) if text else ''))
            elif value.startswith('__ns:='):
                namespace = value[len('__ns:='):]
            elif value.startswith('__node:='):
                node_name = value[len('__node:='):]
        index += 1
    return RosArguments(tuple(files), tuple(overrides), namespace, node_name)
