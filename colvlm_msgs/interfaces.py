"""Parse ROS 2 `.msg` / `.srv` / `.action` files into plain descriptions of their fields.

This is the single reader of interface files: the `dds` transport builds wire types from
what it returns and the type hashes are computed from it. It knows the ROS 2 interface
grammar (primitives, bounded strings, arrays, nested types, constants), nothing about CDR.
An action also gets the messages and services rosidl derives from it for the wire.
Errors name the file, the line, the field and the bad value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import re

PRIMITIVE_TYPES = (
    'bool', 'byte', 'char', 'float32', 'float64', 'int8', 'uint8', 'int16', 'uint16',
    'int32', 'uint32', 'int64', 'uint64', 'string', 'wstring',
)
STRING_TYPES = ('string', 'wstring')
_INTEGER_RANGES = {
    'byte': (0, 255), 'char': (0, 255), 'int8': (-2**7, 2**7 - 1), 'uint8': (0, 2**8 - 1),
    'int16': (-2**15, 2**15 - 1), 'uint16': (0, 2**16 - 1),
    'int32': (-2**31, 2**31 - 1), 'uint32': (0, 2**32 - 1),
    'int64': (-2**63, 2**63 - 1), 'uint64': (0, 2**64 - 1),
}
_FIELD_NAME = re.compile(r'^[a-z][a-z0-9_]*$')
_CONSTANT_NAME = re.compile(r'^[A-Z][A-Z0-9_]*$')
_TYPE = re.compile(
    r'^(?:(?P<package>[a-z][a-z0-9_]*)/)?(?P<name>[A-Za-z][A-Za-z0-9_]*)'
    r'(?:<=(?P<string_bound>\d+))?'
    r'(?:\[(?P<array>(?:<=)?\d*)\])?$'
)
SERVICE_SEPARATOR = '---'


class InterfaceError(ValueError):
    """A malformed or unresolvable interface definition."""


@dataclass(frozen=True)
class FieldType:
    """One field's type: a primitive or a nested message, maybe bounded, maybe an array."""

    base: str                 # primitive name, or 'pkg/msg/Name' for a nested message
    string_bound: int = 0     # characters; 0 = unbounded (strings only)
    array: str = ''           # '' | 'fixed' | 'bounded' | 'unbounded'
    array_size: int = 0       # elements: the fixed length or the upper bound

    @property
    def is_nested(self) -> bool:
        return self.base not in PRIMITIVE_TYPES

    @property
    def element(self) -> FieldType:
        return FieldType(self.base, self.string_bound)


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType
    default: object = None    # the definition's default value, parsed; None when absent


@dataclass(frozen=True)
class Constant:
    name: str
    type: str                 # a primitive name
    value: object


@dataclass(frozen=True)
class MessageSpec:
    name: str                 # 'pkg/msg/Name', or 'pkg/srv/Name_Request' for a service part
    fields: tuple[Field, ...]
    constants: tuple[Constant, ...]
    source: str               # where it was read from, for error messages

    @property
    def package(self) -> str:
        return self.name.split('/')[0]


@dataclass(frozen=True)
class ServiceSpec:
    name: str                 # 'pkg/srv/Name', or 'pkg/action/Name_SendGoal' for an action's
    request: MessageSpec
    response: MessageSpec
    source: str


@dataclass(frozen=True)
class ActionSpec:
    """An action's three parts and the types rosidl derives from them for the wire: the
    send_goal and get_result services and the feedback topic's message."""

    name: str                 # 'pkg/action/Name'
    goal: MessageSpec         # 'pkg/action/Name_Goal'
    result: MessageSpec
    feedback: MessageSpec
    send_goal: ServiceSpec    # {goal_id, goal} -> {accepted, stamp}
    get_result: ServiceSpec   # {goal_id} -> {status, result}
    feedback_message: MessageSpec  # {goal_id, feedback}
    source: str

    @property
    def messages(self) -> tuple[MessageSpec, ...]:
        return (self.goal, self.result, self.feedback, self.feedback_message,
                self.send_goal.request, self.send_goal.response, self.get_result.request,
                self.get_result.response)


def _error(source: str, line_number: int, message: str) -> InterfaceError:
    return InterfaceError(f'{source}:{line_number}: {message}')


def _parse_type(text: str, package: str, source: str, line_number: int) -> FieldType:
    match = _TYPE.match(text)
    if not match:
        raise _error(source, line_number, f'malformed type {text!r}')
    type_package, name = match['package'], match['name']
    if type_package is None and name in PRIMITIVE_TYPES:
        base = name
    elif type_package is None and name == 'Header':
        base = 'std_msgs/msg/Header'  # the one short name ROS 2 still accepts
    elif type_package is None and name[0].isupper():
        base = f'{package}/msg/{name}'
    elif type_package is not None and name[0].isupper():
        base = f'{type_package}/msg/{name}'
    else:
        raise _error(source, line_number, f'unknown type {text!r}')
    string_bound = int(match['string_bound'] or 0)
    if match['string_bound'] is not None and base not in STRING_TYPES:
        raise _error(source, line_number, f'only strings take an upper bound, got {text!r}')
    array_text = match['array']
    if array_text is None:
        return FieldType(base, string_bound)
    if array_text == '':
        return FieldType(base, string_bound, 'unbounded', 0)
    if array_text.startswith('<='):
        size, kind = array_text[2:], 'bounded'
    else:
        size, kind = array_text, 'fixed'
    if not size or int(size) <= 0:
        raise _error(source, line_number, f'array size must be a positive integer, got {text!r}')
    return FieldType(base, string_bound, kind, int(size))


def _parse_scalar(text: str, type_name: str, source: str, line_number: int) -> object:
    text = text.strip()
    try:
        if type_name == 'bool':
            lowered = text.lower()
            if lowered in ('true', '1'):
                return True
            if lowered in ('false', '0'):
                return False
            raise ValueError(text)
        if type_name in ('float32', 'float64'):
            return float(text)
        if type_name in STRING_TYPES:
            if len(text) >= 2 and text[0] == text[-1] and text[0] in '\'"':
                return text[1:-1]
            return text
        value = int(text, 0)
    except ValueError:
        raise _error(source, line_number, f'value {text!r} is not a valid {type_name}') from None
    low, high = _INTEGER_RANGES[type_name]
    if not low <= value <= high:
        raise _error(source, line_number, f'value {value} is out of range for {type_name}')
    return value


def _parse_default(text: str, field_type: FieldType, source: str, line_number: int) -> object:
    if field_type.is_nested:
        raise _error(source, line_number, 'nested message fields cannot have default values')
    if not field_type.array:
        return _parse_scalar(text, field_type.base, source, line_number)
    text = text.strip()
    if not (text.startswith('[') and text.endswith(']')):
        raise _error(source, line_number, f'array default must be [..], got {text!r}')
    items = [item for item in text[1:-1].split(',') if item.strip()]
    return tuple(_parse_scalar(item, field_type.base, source, line_number) for item in items)


def _strip_comment(line: str) -> str:
    # A '#' inside a quoted string default is not a comment.
    quote = None
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in '\'"':
            quote = char
        elif char == '#':
            return line[:index]
    return line


def parse_message(text: str, name: str, source: str = '<string>') -> MessageSpec:
    """Parse the body of a `.msg` file (or one half of a `.srv`) named 'pkg/msg/Name'."""
    package = name.split('/')[0]
    fields: list[Field] = []
    constants: list[Constant] = []
    seen: set[str] = set()
    for line_number, raw in enumerate(text.splitlines(), start=1):
        line = _strip_comment(raw).strip()
        if not line:
            continue
        parts = line.split(None, 1)
        if len(parts) < 2:
            raise _error(source, line_number, f'expected "TYPE NAME", got {line!r}')
        type_text, rest = parts
        field_type = _parse_type(type_text, package, source, line_number)
        if '=' in rest.split(None, 1)[0] or (rest.split(None, 1)[0].isupper() and '=' in rest):
            constant_name, _, value_text = rest.partition('=')
            constant_name = constant_name.strip()
            if not _CONSTANT_NAME.match(constant_name):
                raise _error(source, line_number, f'constant name {constant_name!r} must be '
                             'upper case')
            if field_type.is_nested or field_type.array:
                raise _error(source, line_number,
                             f'constant {constant_name!r} must have a primitive type')
            value = _parse_scalar(value_text, field_type.base, source, line_number)
            constants.append(Constant(constant_name, field_type.base, value))
            seen.add(constant_name)
            continue
        field_name, _, default_text = rest.partition(' ')
        if not _FIELD_NAME.match(field_name) or '__' in field_name or field_name.endswith('_'):
            raise _error(source, line_number, f'field name {field_name!r} must be lower '
                         'snake_case')
        if field_name in seen:
            raise _error(source, line_number, f'field {field_name!r} is defined twice')
        seen.add(field_name)
        default = None
        if default_text.strip():
            default = _parse_default(default_text, field_type, source, line_number)
        fields.append(Field(field_name, field_type, default))
    return MessageSpec(name, tuple(fields), tuple(constants), source)


def parse_service(text: str, name: str, source: str = '<string>') -> ServiceSpec:
    """Parse a `.srv` body named 'pkg/srv/Name' into its request and response messages."""
    lines = text.splitlines()
    separators = [i for i, line in enumerate(lines) if line.strip() == SERVICE_SEPARATOR]
    if len(separators) != 1:
        raise InterfaceError(f'{source}: a service needs exactly one {SERVICE_SEPARATOR!r} line, '
                             f'found {len(separators)}')
    cut = separators[0]
    request = parse_message('\n'.join(lines[:cut]), f'{name}_Request', source)
    # Keep line numbers true to the file for the response half.
    response = parse_message('\n' * (cut + 1) + '\n'.join(lines[cut + 1:]), f'{name}_Response',
                             source)
    return ServiceSpec(name, request, response, source)


_UUID = FieldType('unique_identifier_msgs/msg/UUID')
_TIME = FieldType('builtin_interfaces/msg/Time')


def _derived(name: str, fields: list[tuple[str, FieldType]], source: str) -> MessageSpec:
    return MessageSpec(name, tuple(Field(n, t) for n, t in fields), (), source)


def parse_action(text: str, name: str, source: str = '<string>') -> ActionSpec:
    """Parse an `.action` body named 'pkg/action/Name': goal, result and feedback, plus the
    wire types rosidl derives from them (field names and order as rosidl_parser makes them)."""
    lines = text.splitlines()
    cuts = [i for i, line in enumerate(lines) if line.strip() == SERVICE_SEPARATOR]
    if len(cuts) != 2:
        raise InterfaceError(f'{source}: an action needs exactly two {SERVICE_SEPARATOR!r} '
                             f'lines, found {len(cuts)}')
    bounds = ((0, cuts[0]), (cuts[0] + 1, cuts[1]), (cuts[1] + 1, len(lines)))
    # Leading newlines keep line numbers true to the file in errors.
    goal, result, feedback = (
        parse_message('\n' * start + '\n'.join(lines[start:end]), f'{name}_{part}', source)
        for (start, end), part in zip(bounds, ('Goal', 'Result', 'Feedback'), strict=True))
    send_goal = ServiceSpec(
        f'{name}_SendGoal',
        _derived(f'{name}_SendGoal_Request', [('goal_id', _UUID),
                                               ('goal', FieldType(goal.name))], source),
        _derived(f'{name}_SendGoal_Response', [('accepted', FieldType('bool')),
                                                ('stamp', _TIME)], source), source)
    get_result = ServiceSpec(
        f'{name}_GetResult',
        _derived(f'{name}_GetResult_Request', [('goal_id', _UUID)], source),
        _derived(f'{name}_GetResult_Response', [('status', FieldType('int8')),
                                                 ('result', FieldType(result.name))], source),
        source)
    feedback_message = _derived(f'{name}_FeedbackMessage',
                                [('goal_id', _UUID), ('feedback', FieldType(feedback.name))],
                                source)
    return ActionSpec(name, goal, result, feedback, send_goal, get_result, feedback_message,
                      source)


def read_interface(path: Path, package: str) -> MessageSpec | ServiceSpec | ActionSpec:
    """Read `<dir>/msg/Name.msg`, `<dir>/srv/Name.srv` or `<dir>/action/Name.action` as part
    of `package`."""
    path = Path(path)
    kind = path.suffix[1:]
    if kind not in ('msg', 'srv', 'action'):
        raise InterfaceError(f'{path}: not a .msg, .srv or .action file')
    if not re.match(r'^[A-Z][A-Za-z0-9]*$', path.stem):
        raise InterfaceError(f'{path}: interface name {path.stem!r} must be CamelCase')
    name = f'{package}/{kind}/{path.stem}'
    text = path.read_text(encoding='utf-8')
    if kind == 'msg':
        return parse_message(text, name, str(path))
    if kind == 'action':
        return parse_action(text, name, str(path))
    return parse_service(text, name, str(path))
