"""The interface reader: grammar, resolution, and clear errors naming file, line and value."""

from __future__ import annotations

import pytest
from rosbags.typesys import Stores, get_typestore

from colvlm_msgs.interfaces import InterfaceError, parse_message, parse_service, read_interface
from colvlm_msgs.library import InterfaceLibrary, default_library


def test_grammar_covers_arrays_bounds_defaults_and_constants():
    spec = parse_message(
        '# comment\n'
        'uint8 MODE_A=1  # trailing comment\n'
        "string NAME='x#y'\n"
        'float64[9] k\n'
        'int32[] values [1, 2, 3]\n'
        'string<=8[<=4] tags\n'
        'Header header\n'
        'other_pkg/Thing thing\n'
        'Local local\n'
        'bool flag true\n', 'pkg/msg/Example', 'Example.msg')
    assert [c.name for c in spec.constants] == ['MODE_A', 'NAME']
    assert spec.constants[1].value == 'x#y'
    fields = {f.name: f for f in spec.fields}
    assert (fields['k'].type.array, fields['k'].type.array_size) == ('fixed', 9)
    assert fields['values'].default == (1, 2, 3)
    assert fields['tags'].type.string_bound == 8 and fields['tags'].type.array == 'bounded'
    assert fields['header'].type.base == 'std_msgs/msg/Header'
    assert fields['thing'].type.base == 'other_pkg/msg/Thing'
    assert fields['local'].type.base == 'pkg/msg/Local'
    assert fields['flag'].default is True


@pytest.mark.parametrize('text, message', [
    ('int32 Bad_Name\n', "field name 'Bad_Name'"),
    ('uint8 x 300\n', 'value 300 is out of range for uint8'),
    ('flot32 x\n', "unknown type 'flot32'"),
    ('int32[0] x\n', 'array size must be a positive integer'),
    ('int32 x\nint32 x\n', "field 'x' is defined twice"),
    ('int32<=3 x\n', 'only strings take an upper bound'),
    ('int32\n', 'expected "TYPE NAME"'),
    ('uint8 lower=1\n', "constant name 'lower'"),
])
def test_syntax_errors_name_file_line_and_value(text, message):
    with pytest.raises(InterfaceError, match='Bad.msg:') as error:
        parse_message(text, 'pkg/msg/Bad', 'Bad.msg')
    assert message in str(error.value)
    assert len(str(error.value).splitlines()) == 1


def test_unknown_nested_type_fails_validation_naming_the_field(tmp_path):
    (tmp_path / 'msg').mkdir()
    (tmp_path / 'msg' / 'Broken.msg').write_text('int32 ok\nNoSuchType thing\n')
    library = InterfaceLibrary()
    library.load_package('pkg', tmp_path)
    with pytest.raises(InterfaceError, match="Broken.msg: field 'thing' has unknown type "
                                             "'pkg/msg/NoSuchType'"):
        library.validate()
    with pytest.raises(InterfaceError, match="unknown message type 'pkg/msg/Nope'"):
        library.message('pkg/Nope')


def test_service_needs_one_separator_and_keeps_line_numbers(tmp_path):
    with pytest.raises(InterfaceError, match='exactly one'):
        parse_service('int32 a\n', 'pkg/srv/S', 'S.srv')
    with pytest.raises(InterfaceError, match='S.srv:3:'):
        parse_service('int32 a\n---\nbad type\n', 'pkg/srv/S', 'S.srv')
    path = tmp_path / 'srv' / 'lower.srv'
    path.parent.mkdir()
    path.write_text('---\n')
    with pytest.raises(InterfaceError, match='CamelCase'):
        read_interface(path, 'pkg')


def test_standard_interfaces_match_the_ros2_jazzy_definitions():
    store = get_typestore(Stores.ROS2_JAZZY)
    library = default_library()
    for name, spec in library.messages.items():
        if spec.package == 'colvlm':
            continue
        _, reference_fields = store.fielddefs[name]
        assert [f.name for f in spec.fields] == [name for name, _ in reference_fields], name


def test_every_colvlm_field_says_its_meaning_in_a_comment():
    library = default_library()
    specs = [s for s in library.messages.values() if s.package == 'colvlm']
    specs += [part for s in library.services.values() for part in (s.request, s.response)]
    for spec in specs:
        lines = open(spec.source, encoding='utf-8').read().splitlines()
        for field in spec.fields:
            line = next(line for line in lines if line.split()[1:2] == [field.name]
                        and not line.startswith('#'))
            # Fields whose name and type say it all (success, status_message, nested
            # messages) may go without; numbers with units must have a comment.
            if field.type.base in ('float32', 'float64', 'uint32', 'uint64', 'uint16'):
                assert '#' in line, f'{spec.source}: {field.name} needs a unit comment'
