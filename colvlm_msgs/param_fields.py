"""Parameters declared once, on the fields of the configuration dataclasses that use them.

A group of settings (`GateConfig`, `Acceleration`, ...) is a frozen dataclass whose fields are
made with `parameter(...)`: the field's default, its ROS parameter name, description, unit and
range or choices live in one place. From that one declaration come

- the node's parameter table rows (`parameter_specs(GateConfig)`), so the docs' tables and
  the start-up checks read the same metadata;
- validation on construction (`check_fields(self)` in `__post_init__`), so a config built in
  code (a benchmark, a test, a notebook) is checked exactly as one read from YAML, and a bad
  value names the ROS parameter, not the Python field;
- keyword construction from parameter values (`from_parameters(GateConfig, values)`).

Cross-field rules (a budget needs a lossy codec, ...) stay in the group's `__post_init__`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from colvlm_msgs.params import ParameterError, ParameterSpec

_KEY = 'colvlm.parameter'
_GROUP = 'colvlm.group'
# Annotation strings (modules use `from __future__ import annotations`) -> parameter types.
_TYPES = {'bool': 'bool', 'int': 'int', 'float': 'float', 'str': 'str',
          'tuple[str, ...]': 'str_array', 'tuple[int, ...]': 'int_array',
          'tuple[float, ...]': 'float_array'}


@dataclasses.dataclass(frozen=True)
class _Declared:
    name: str
    description: str
    unit: str
    min: float | None
    max: float | None
    choices: tuple


def parameter(name: str, default: Any, description: str, *, unit: str = '',
              min: float | None = None, max: float | None = None,
              choices: tuple = ()) -> Any:
    """A dataclass field that is also the ROS parameter `name` (dotted, 'gate.threshold')."""
    declared = _Declared(name, description, unit, min, max, tuple(choices))
    return dataclasses.field(default=default, metadata={_KEY: declared})


def group(cls) -> Any:
    """A dataclass field holding a group of parameters (`gate: GateConfig = group(GateConfig)`):
    its rows join the table where the field stands, and `from_parameters` builds it."""
    return dataclasses.field(default_factory=cls, metadata={_GROUP: cls})


def _declared(cls) -> list[tuple[dataclasses.Field, _Declared]]:
    return [(f, f.metadata[_KEY]) for f in dataclasses.fields(cls) if _KEY in f.metadata]


def _spec(field: dataclasses.Field, declared: _Declared) -> ParameterSpec:
    kind = _TYPES.get(field.type if isinstance(field.type, str) else field.type.__name__)
    if kind is None:
        raise TypeError(f'{declared.name}: no parameter type for annotation {field.type!r}')
    description = f'{declared.description}, {declared.unit}' if declared.unit \
        else declared.description
    default = list(field.default) if kind.endswith('_array') else field.default
    return ParameterSpec(declared.name, kind, default, description, declared.min,
                         declared.max, declared.choices)


def parameter_specs(cls) -> list[ParameterSpec]:
    """The parameter table rows `cls`'s fields declare, in field order, groups included."""
    specs = []
    for field in dataclasses.fields(cls):
        if _KEY in field.metadata:
            specs.append(_spec(field, field.metadata[_KEY]))
        elif _GROUP in field.metadata:
            specs += parameter_specs(field.metadata[_GROUP])
    return specs


def check_fields(config) -> None:
    """Validate (and normalise: ints to float where declared float, lists to tuples) every
    declared field of a frozen dataclass instance; ValueError naming the parameter."""
    for field, declared in _declared(type(config)):
        spec = _spec(field, declared)
        value = getattr(config, field.name)
        try:
            checked = spec.check(_plain(value), '')
        except ParameterError as error:
            raise ValueError(str(error)) from None
        object.__setattr__(config, field.name, checked)


def _plain(value: Any) -> Any:
    """numpy scalars as the Python numbers they hold (a sweep passes np.float64 / np.int64)."""
    item = getattr(value, 'item', None)
    return item() if callable(item) and getattr(value, 'shape', None) == () else value


def from_parameters(cls, values: dict[str, Any], **others: Any):
    """`cls` built by keyword from the parameter values its fields (and groups) declare, plus
    `others` (fields that are not parameters); a value absent from `values` keeps its default."""
    kwargs: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if _KEY in field.metadata and field.metadata[_KEY].name in values:
            value = values[field.metadata[_KEY].name]
            kwargs[field.name] = tuple(value) if isinstance(value, list) else value
        elif _GROUP in field.metadata:
            kwargs[field.name] = from_parameters(field.metadata[_GROUP], values)
    return cls(**kwargs, **others)
