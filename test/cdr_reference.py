"""The rosbags library as an independent reference for colvlm's wire types (tests only).

Uses colvlm's interface files registered with a rosbags Jazzy type store
(`colvlm_msgs.bag.colvlm_typestore`), fills both type systems with the same random values,
and converts colvlm (dds) messages into rosbags messages.
"""

from __future__ import annotations

import random
import string

import numpy as np

from colvlm_msgs.bag import colvlm_typestore
from colvlm_msgs.interfaces import FieldType
from colvlm_msgs.library import default_library

_NUMPY = {
    'bool': np.bool_, 'byte': np.uint8, 'char': np.uint8, 'float32': np.float32,
    'float64': np.float64, 'int8': np.int8, 'uint8': np.uint8, 'int16': np.int16,
    'uint16': np.uint16, 'int32': np.int32, 'uint32': np.uint32, 'int64': np.int64,
    'uint64': np.uint64,
}
_RANGES = {
    # rosbags packs `byte` (an octet in ROS 2) as a signed char: the half both agree on.
    'byte': (0, 127), 'char': (0, 255), 'int8': (-128, 127), 'uint8': (0, 255),
    'int16': (-2**15, 2**15 - 1), 'uint16': (0, 2**16 - 1), 'int32': (-2**31, 2**31 - 1),
    'uint32': (0, 2**32 - 1), 'int64': (-2**63, 2**63 - 1), 'uint64': (0, 2**64 - 1),
}


def reference_typestore():
    """A rosbags Jazzy type store that also knows every colvlm interface (the package's own
    registration, which record and replay use too)."""
    return colvlm_typestore()


def random_value(field_type: FieldType, rng: random.Random, cls_for, *, size: int = 4):
    """A random value of `field_type` for the colvlm class system (lists, str, int, float)."""
    if field_type.array:
        count = field_type.array_size if field_type.array == 'fixed' else rng.randint(0, size)
        if field_type.array == 'bounded':
            count = min(count, field_type.array_size)
        return [random_value(field_type.element, rng, cls_for, size=size) for _ in range(count)]
    if field_type.is_nested:
        return random_message(field_type.base, rng, cls_for, size=size)
    base = field_type.base
    if base == 'bool':
        return rng.random() < 0.5
    if base in ('float32', 'float64'):
        value = rng.uniform(-1e6, 1e6)
        return float(np.float32(value)) if base == 'float32' else value
    if base == 'string':
        alphabet = string.printable + 'äöü€ßλ'
        length = rng.randint(0, size * 4)
        if field_type.string_bound:
            length = min(length, field_type.string_bound)
        return ''.join(rng.choice(alphabet) for _ in range(length))
    low, high = _RANGES[base]
    return rng.randint(low, high)


def spec_of(name: str):
    """The spec of a message or of one half ('pkg/srv/Name_Request') of a service."""
    library = default_library()
    if '/srv/' in name:
        service_name, _, half = name.rpartition('_')
        service = library.service(service_name)
        return service.request if half == 'Request' else service.response
    return library.message(name)


def random_message(name: str, rng: random.Random, cls_for, *, size: int = 4):
    spec = spec_of(name)
    return cls_for(name)(**{field.name: random_value(field.type, rng, cls_for, size=size)
                            for field in spec.fields})


def to_rosbags(message, name: str, store):
    """The rosbags message equal to the colvlm (dds) `message` of type `name`."""
    spec = spec_of(name)
    values = {}
    for field in spec.fields:
        value = getattr(message, field.name)
        field_type = field.type
        if field_type.is_nested and field_type.array:
            value = [to_rosbags(item, field_type.base, store) for item in value]
        elif field_type.is_nested:
            value = to_rosbags(value, field_type.base, store)
        elif field_type.array and field_type.base not in ('string', 'wstring'):
            value = np.array(value, dtype=_NUMPY[field_type.base])
        elif field_type.array:
            value = list(value)
        values[field.name] = value
    return store.types[name](**values)
