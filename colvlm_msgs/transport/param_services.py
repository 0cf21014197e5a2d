"""ROS 2's parameter services (rcl_interfaces) for a node of the `dds` backend, so that
`ros2 param list/get/describe/dump` see its parameters as they see an rclpy node's.

They answer from the values the node declared at start-up, which it reads once: every set
(`set_parameters`, `set_parameters_atomically`) is refused with successful=false and a
'read-only' reason, as the `ros` backend's read-only descriptors make rclpy refuse it. The
services are named as rclpy names them (`<node>/list_parameters`, ...). This module knows
the parameter table and the port, nothing of a middleware.
"""

from __future__ import annotations

import threading

from colvlm_msgs.params import ParameterSpec, ParameterTable

# rcl_interfaces/msg/ParameterType's numbering (that message has no fields to restate).
NOT_SET, BOOL, INTEGER, DOUBLE, STRING = 0, 1, 2, 3, 4
BOOL_ARRAY, INTEGER_ARRAY, DOUBLE_ARRAY, STRING_ARRAY = 6, 7, 8, 9
# The table's types -> (ParameterType, the ParameterValue field that holds it).
_WIRE = {
    'bool': (BOOL, 'bool_value'), 'int': (INTEGER, 'integer_value'),
    'float': (DOUBLE, 'double_value'), 'str': (STRING, 'string_value'),
    'bool_array': (BOOL_ARRAY, 'bool_array_value'),
    'int_array': (INTEGER_ARRAY, 'integer_array_value'),
    'float_array': (DOUBLE_ARRAY, 'double_array_value'),
    'str_array': (STRING_ARRAY, 'string_array_value'),
}
AT_START_UP = 'read at start-up: set it in a params file or with -p and restart the node'
_PACKAGE = 'rcl_interfaces/srv/'


def list_names(names: list[str], prefixes: list[str], depth: int) -> tuple[list, list]:
    """ListParameters' answer: (names, prefixes) of `names` under any of `prefixes` (all when
    none), at most `depth` dotted levels below the prefix (0: any depth)."""
    listed, groups = [], []
    for name in names:
        if prefixes:
            under = [p for p in prefixes if name == p or name.startswith(p + '.')]
            if not under:
                continue
            levels = min(name[len(p):].count('.') for p in under)
        else:
            levels = name.count('.')
        if depth and levels >= depth:
            continue
        listed.append(name)
        group = name.rpartition('.')[0]
        if group and group not in groups:
            groups.append(group)
    return listed, groups


def parameter_value(spec: ParameterSpec | None, value: object, value_type: type):
    """A ParameterValue message (class `value_type`) holding `value`; NOT_SET without spec."""
    if spec is None:
        return value_type(type=NOT_SET)
    kind, field = _WIRE[spec.type]
    return value_type(type=kind, **{field: list(value) if isinstance(value, tuple) else value})


def describe(spec: ParameterSpec | None, name: str, descriptor_type: type,
             integer_range: type, float_range: type):
    """A ParameterDescriptor message: type, description, range, read-only."""
    if spec is None:
        return descriptor_type(name=name, type=NOT_SET)
    descriptor = descriptor_type(name=name, type=_WIRE[spec.type][0],
                                 description=spec.description,
                                 additional_constraints=AT_START_UP, read_only=True)
    if spec.min is not None and spec.max is not None:
        if spec.type in ('int', 'int_array'):
            descriptor.integer_range = [integer_range(from_value=int(spec.min),
                                                      to_value=int(spec.max), step=0)]
        elif spec.type in ('float', 'float_array'):
            descriptor.floating_point_range = [float_range(from_value=float(spec.min),
                                                           to_value=float(spec.max), step=0.0)]
    return descriptor


def refusal(name: str, specs: dict) -> str:
    """Why setting `name` is refused (rclpy's words for a read-only parameter)."""
    if name not in specs:
        return f'parameter {name!r} is not declared by this node'
    return f'Trying to set a read-only parameter: {name}. ({AT_START_UP})'


class ParameterServices:
    """The six services of one node, answering from what it declared (several tables add
    up: a node may declare more than once)."""

    def __init__(self, node) -> None:
        self.node = node
        self.specs: dict[str, ParameterSpec] = {}
        self.values: dict[str, object] = {}
        self._lock = threading.Lock()
        message = node.message_type
        self._value = message('rcl_interfaces/msg/ParameterValue')
        self._descriptor = message('rcl_interfaces/msg/ParameterDescriptor')
        self._integer_range = message('rcl_interfaces/msg/IntegerRange')
        self._float_range = message('rcl_interfaces/msg/FloatingPointRange')
        self._result = message('rcl_interfaces/msg/SetParametersResult')
        self._types = {name: node.service_type(_PACKAGE + name) for name in (
            'ListParameters', 'GetParameters', 'GetParameterTypes', 'DescribeParameters',
            'SetParameters', 'SetParametersAtomically')}
        for name, handler in (('ListParameters', self.list), ('GetParameters', self.get),
                              ('GetParameterTypes', self.get_types),
                              ('DescribeParameters', self.describe),
                              ('SetParameters', self.set),
                              ('SetParametersAtomically', self.set_atomically)):
            node.create_service(_PACKAGE + name, '~/' + _snake(name), handler)

    def add(self, table: ParameterTable, values: dict) -> None:
        with self._lock:
            self.specs.update({name: table.specs[name] for name in values})
            self.values.update(values)

    def list(self, request):
        with self._lock:
            names = sorted(self.values)
        listed, groups = list_names(names, list(request.prefixes), int(request.depth))
        response = self._types['ListParameters'].Response()
        response.result.names, response.result.prefixes = listed, groups
        return response

    def get(self, request):
        with self._lock:
            values = [parameter_value(self.specs.get(name), self.values.get(name), self._value)
                      for name in request.names]
        return self._types['GetParameters'].Response(values=values)

    def get_types(self, request):
        with self._lock:
            types = [_WIRE[self.specs[name].type][0] if name in self.specs else NOT_SET
                     for name in request.names]
        return self._types['GetParameterTypes'].Response(types=types)

    def describe(self, request):
        with self._lock:
            descriptors = [describe(self.specs.get(name), name, self._descriptor,
                                    self._integer_range, self._float_range)
                           for name in request.names]
        return self._types['DescribeParameters'].Response(descriptors=descriptors)

    def set(self, request):
        results = [self._result(successful=False, reason=refusal(p.name, self.specs))
                   for p in request.parameters]
        return self._types['SetParameters'].Response(results=results)

    def set_atomically(self, request):
        reason = '; '.join(refusal(p.name, self.specs) for p in request.parameters)
        return self._types['SetParametersAtomically'].Response(
            result=self._result(successful=False, reason=reason or 'no parameter given'))


def _snake(name: str) -> str:
    """'ListParameters' -> 'list_parameters'."""
    return ''.join(f'_{c.lower()}' if c.isupper() else c for c in name).lstrip('_')


def serve_parameters(node, table: ParameterTable, values: dict) -> ParameterServices:
    """Serve `values` (as declared from `table`) on `node`'s parameter services, created on
    the first call and added to on later ones."""
    services = getattr(node, '_parameter_services', None)
    if services is None:
        services = ParameterServices(node)
        node._parameter_services = services
    services.add(table, values)
    return services
