"""RIHS01 type hashes (REP 2011) of interface specs, as ROS 2 Jazzy computes them.

rmw_cyclonedds reads `typehash=RIHS01_<hex>;` from each endpoint's USER_DATA; giving ours
keeps ROS 2 tools and type checks happy. The hash covers field names and types of a message
and of everything it refers to, not comments or default values.
"""

from __future__ import annotations

import hashlib
import json

from colvlm_msgs.interfaces import FieldType, MessageSpec
from colvlm_msgs.library import InterfaceLibrary

# type_description_interfaces/msg/FieldType constants.
_TYPE_IDS = {
    'nested': 1, 'int8': 2, 'uint8': 3, 'int16': 4, 'uint16': 5, 'int32': 6, 'uint32': 7,
    'int64': 8, 'uint64': 9, 'float32': 10, 'float64': 11, 'char': 13, 'bool': 15,
    'byte': 16, 'string': 17, 'wstring': 18,
}
_BOUNDED_STRING_IDS = {'string': 21, 'wstring': 22}
_ARRAY_OFFSETS = {'': 0, 'fixed': 48, 'bounded': 96, 'unbounded': 144}
# rosidl gives structures without fields one placeholder member.
_EMPTY_PLACEHOLDER = 'structure_needs_at_least_one_member'


def _type_id(field_type: FieldType) -> int:
    if field_type.is_nested:
        base = _TYPE_IDS['nested']
    elif field_type.string_bound:
        base = _BOUNDED_STRING_IDS[field_type.base]
    else:
        base = _TYPE_IDS[field_type.base]
    return base + _ARRAY_OFFSETS[field_type.array]


def _description(spec: MessageSpec) -> dict:
    fields = [
        {'name': field.name,
         'type': {'type_id': _type_id(field.type),
                  'capacity': field.type.array_size,
                  'string_capacity': field.type.string_bound,
                  'nested_type_name': field.type.base if field.type.is_nested else ''}}
        for field in spec.fields
    ]
    if not fields:
        fields = [{'name': _EMPTY_PLACEHOLDER,
                   'type': {'type_id': _TYPE_IDS['uint8'], 'capacity': 0, 'string_capacity': 0,
                            'nested_type_name': ''}}]
    return {'type_name': spec.name, 'fields': fields}


def rihs01(spec: MessageSpec, library: InterfaceLibrary) -> str:
    """'RIHS01_' + 64 hex digits for a message spec (or one half of a service)."""
    referenced = sorted(library.dependencies(spec), key=lambda s: s.name)
    document = {
        'type_description': _description(spec),
        'referenced_type_descriptions': [_description(s) for s in referenced],
    }
    text = json.dumps(document, ensure_ascii=True, separators=(', ', ': '), sort_keys=False)
    return 'RIHS01_' + hashlib.sha256(text.encode('utf-8')).hexdigest()
