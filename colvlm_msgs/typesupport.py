"""Python message classes for the `dds` transport, built from the interface specs.

Each class is a Cyclone DDS `IdlStruct` named as rmw_cyclonedds names it
(`pkg::msg::dds_::Name_`), so its XCDR1 serialization is the ROS 2 wire format. Fields take
keyword arguments and default like rclpy's generated classes (zeros, '', [], nested
defaults), and constants are class attributes, so node code reads the same on both
transports. Service wire types carry rmw_cyclonedds' 16-byte request header
`{uint64 guid; int64 seq}` as two leading members. An action is its derived services and
feedback message (rmw's action wire is plain services and topics), with rclpy's `Goal`,
`Result` and `Feedback` names for its parts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
import typing

from cyclonedds.idl import IdlStruct, make_idl_struct
from cyclonedds.idl import types as idl

from colvlm_msgs.interfaces import FieldType, InterfaceError, MessageSpec
from colvlm_msgs.library import InterfaceLibrary, default_library, normalize_name
from colvlm_msgs.type_hash import rihs01

_PRIMITIVES = {
    'bool': bool, 'byte': idl.byte, 'char': idl.uint8, 'float32': idl.float32,
    'float64': idl.float64, 'int8': idl.int8, 'uint8': idl.uint8, 'int16': idl.int16,
    'uint16': idl.uint16, 'int32': idl.int32, 'uint32': idl.uint32, 'int64': idl.int64,
    'uint64': idl.uint64, 'string': str,
}
_ZEROS = {'bool': False, 'float32': 0.0, 'float64': 0.0, 'string': ''}
# The leading members of service samples on the wire (rmw_cyclonedds' cdds_request_header_t).
HEADER_GUID = 'rmw_request_guid'
HEADER_SEQUENCE = 'rmw_request_sequence'


def dds_type_name(name: str) -> str:
    """'pkg/msg/Name' -> 'pkg::msg::dds_::Name_' (service halves likewise)."""
    package, kind, short = name.split('/')
    return f'{package}::{kind}::dds_::{short}_'


@dataclass(frozen=True)
class MessageType:
    """A message class with what the wire needs to know about it."""

    name: str                     # 'pkg/msg/Name'
    cls: type                     # the IdlStruct class
    dds_name: str                 # 'pkg::msg::dds_::Name_'
    type_hash: str                # 'RIHS01_...'


@dataclass(frozen=True)
class ServiceType:
    """A service's request/response classes, rclpy-style, plus their wire forms."""

    name: str                     # 'pkg/srv/Name'
    Request: type
    Response: type
    request_wire: type            # header + request fields, topic rq/<name>Request
    response_wire: type           # header + response fields, topic rr/<name>Reply
    request_dds_name: str
    response_dds_name: str
    request_hash: str
    response_hash: str


@dataclass(frozen=True)
class ActionType:
    """An action's parts, rclpy-style (`Goal`, `Result`, `Feedback`), and its wire types."""

    name: str                     # 'pkg/action/Name'
    Goal: type
    Result: type
    Feedback: type
    send_goal: ServiceType        # service <name>/_action/send_goal
    get_result: ServiceType       # service <name>/_action/get_result
    feedback_message: MessageType  # topic <name>/_action/feedback


class TypeSupport:
    """Builds and caches classes for the specs of one InterfaceLibrary."""

    def __init__(self, library: InterfaceLibrary):
        self.library = library
        self._messages: dict[str, MessageType] = {}
        self._services: dict[str, ServiceType] = {}
        self._actions: dict[str, ActionType] = {}

    def message(self, name: str) -> MessageType:
        name = normalize_name(name, 'msg')
        if name not in self._messages:
            spec = self.library.message(name)
            cls = self._build(spec, dds_type_name(name), {})
            self._messages[name] = MessageType(name, cls, dds_type_name(name),
                                               rihs01(spec, self.library))
        return self._messages[name]

    def service(self, name: str) -> ServiceType:
        name = normalize_name(name, 'srv')
        if name not in self._services:
            spec = self.library.service(name)
            header = {HEADER_GUID: idl.uint64, HEADER_SEQUENCE: idl.int64}
            parts = {}
            for half in (spec.request, spec.response):
                dds_name = dds_type_name(half.name)
                parts[half.name] = (self._build(half, dds_name, {}),
                                    self._build(half, dds_name, header),
                                    dds_name, rihs01(half, self.library))
            request, response = parts[spec.request.name], parts[spec.response.name]
            self._services[name] = ServiceType(
                name, request[0], response[0], request[1], response[1], request[2],
                response[2], request[3], response[3])
        return self._services[name]

    def action(self, name: str) -> ActionType:
        name = normalize_name(name, 'action')
        if name not in self._actions:
            spec = self.library.action(name)
            self._actions[name] = ActionType(
                name, self.message(spec.goal.name).cls, self.message(spec.result.name).cls,
                self.message(spec.feedback.name).cls, self.service(spec.send_goal.name),
                self.service(spec.get_result.name), self.message(spec.feedback_message.name))
        return self._actions[name]

    def _field_type(self, field_type: FieldType, source: str, field_name: str) -> object:
        if field_type.is_nested:
            element = self.message(field_type.base).cls
        elif field_type.base == 'wstring':
            raise InterfaceError(f'{source}: field {field_name!r}: wstring is not supported '
                                 'by the dds transport')
        elif field_type.string_bound:
            element = idl.bounded_str[field_type.string_bound]
        else:
            element = _PRIMITIVES[field_type.base]
        if field_type.array == 'fixed':
            return idl.array[element, field_type.array_size]
        if field_type.array == 'bounded':
            return idl.sequence[element, field_type.array_size]
        if field_type.array == 'unbounded':
            return idl.sequence[element]
        return element

    def _default_factory(self, field_type: FieldType, default: object) -> typing.Callable:
        if field_type.array:
            if default is not None:
                return lambda: list(default)
            if field_type.array == 'fixed':
                element = self._default_factory(field_type.element, None)
                return lambda: [element() for _ in range(field_type.array_size)]
            return list
        if field_type.is_nested:
            return self.message(field_type.base).cls
        value = default if default is not None else _ZEROS.get(field_type.base, 0)
        return lambda: value

    def _build(self, spec: MessageSpec, dds_name: str, leading: dict) -> type[IdlStruct]:
        fields = dict(leading)
        for field in spec.fields:
            fields[field.name] = self._field_type(field.type, spec.source, field.name)
        cls = make_idl_struct(spec.name.split('/')[-1], dds_name, fields, dataclassify=False)
        # Defaults as rclpy's generated classes have them: every field optional.
        for name in leading:
            setattr(cls, name, 0)
        for field in spec.fields:
            setattr(cls, field.name, dataclasses.field(
                default_factory=self._default_factory(field.type, field.default)))
        cls = dataclasses.dataclass(cls)
        for constant in spec.constants:
            setattr(cls, constant.name, constant.value)
        return cls


@lru_cache(maxsize=1)
def default_typesupport() -> TypeSupport:
    return TypeSupport(default_library())


def message_class(name: str) -> type:
    """The `dds` class of a message, e.g. message_class('colvlm/msg/Query')."""
    return default_typesupport().message(name).cls


def service_classes(name: str) -> ServiceType:
    return default_typesupport().service(name)


def action_classes(name: str) -> ActionType:
    """The `dds` classes of an action, e.g. action_classes('colvlm/action/Ask').Goal."""
    return default_typesupport().action(name)
