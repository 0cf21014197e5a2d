"""colvlm/action/Ask on the wire: the types rosidl derives from an .action file, their CDR
bytes and RIHS01 hashes with rosbags as the reference (the derived types written out here
as rcl_action lays them out), action_msgs' hashes as Jazzy's rosidl generated them, and
clear errors for a malformed .action file."""

from __future__ import annotations

from pathlib import Path
import random

from cdr_reference import random_value, to_rosbags
import pytest
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from colvlm_msgs.bag import colvlm_typestore
from colvlm_msgs.interfaces import InterfaceError, parse_action
from colvlm_msgs.library import default_library
from colvlm_msgs.typesupport import default_typesupport

LIBRARY = default_library()
SUPPORT = default_typesupport()
ASK = LIBRARY.action('colvlm/action/Ask')
# rcl_action's wrappers around an action's parts (rosidl_parser's layout), written out.
WRAPPERS = {
    'SendGoal_Request': 'unique_identifier_msgs/UUID goal_id\ncolvlm/action/Ask_Goal goal\n',
    'SendGoal_Response': 'bool accepted\nbuiltin_interfaces/Time stamp\n',
    'GetResult_Request': 'unique_identifier_msgs/UUID goal_id\n',
    'GetResult_Response': 'int8 status\ncolvlm/action/Ask_Result result\n',
    'FeedbackMessage': 'unique_identifier_msgs/UUID goal_id\n'
                       'colvlm/action/Ask_Feedback feedback\n',
}
PARTS = ['Goal', 'Result', 'Feedback', *WRAPPERS]


@pytest.fixture(scope='module')
def store():
    """rosbags' Jazzy store with colvlm's interfaces and the Ask action's types."""
    reference = get_typestore(Stores.ROS2_JAZZY)
    reference.register({name: colvlm_typestore().fielddefs[name]
                        for name in colvlm_typestore().fielddefs
                        if name not in reference.fielddefs})
    sections = Path(ASK.source).read_text(encoding='utf-8').split('\n---\n')
    types = {}
    for part, text in zip(('Goal', 'Result', 'Feedback'), sections, strict=True):
        # Parsed as a colvlm/msg type so that its short names resolve as rosidl resolves
        # them (Query is colvlm/msg/Query), then filed under its action name.
        parsed = get_types_from_msg(text, f'colvlm/msg/Ask_{part}')
        types[f'colvlm/action/Ask_{part}'] = parsed[f'colvlm/msg/Ask_{part}']
    for part, text in WRAPPERS.items():
        types.update(get_types_from_msg(text, f'colvlm/action/Ask_{part}'))
    reference.register(types)
    return reference


def spec(part: str):
    if part.startswith(('SendGoal', 'GetResult')):
        service, half = part.split('_')
        service_spec = LIBRARY.service(f'colvlm/action/Ask_{service}')
        return service_spec.request if half == 'Request' else service_spec.response
    return LIBRARY.message(f'colvlm/action/Ask_{part}')


def cls(part: str) -> type:
    if part.startswith(('SendGoal', 'GetResult')):
        service, half = part.split('_')
        return getattr(SUPPORT.service(f'colvlm/action/Ask_{service}'), half)
    return SUPPORT.message(f'colvlm/action/Ask_{part}').cls


def random_part(part: str, seed: int):
    def cls_for(name: str) -> type:
        return SUPPORT.message(name).cls

    rng = random.Random(seed)
    return cls(part)(**{field.name: random_value(field.type, rng, cls_for)
                        for field in spec(part).fields})


def test_the_action_derives_rosidls_wire_types():
    fields = {part: [f.name for f in spec(part).fields] for part in WRAPPERS}
    assert fields == {'SendGoal_Request': ['goal_id', 'goal'],
                      'SendGoal_Response': ['accepted', 'stamp'],
                      'GetResult_Request': ['goal_id'],
                      'GetResult_Response': ['status', 'result'],
                      'FeedbackMessage': ['goal_id', 'feedback']}
    assert [f.type.base for f in ASK.goal.fields] == ['colvlm/msg/Query']
    assert [f.type.base for f in ASK.result.fields] == ['colvlm/msg/Answer']
    types = SUPPORT.action('colvlm/action/Ask')
    assert types.Goal is cls('Goal') and types.Feedback.STAGE_SECOND_PASS == 9
    assert types.send_goal.request_dds_name == 'colvlm::action::dds_::Ask_SendGoal_Request_'
    assert types.feedback_message.dds_name == 'colvlm::action::dds_::Ask_FeedbackMessage_'
    assert SUPPORT.service('action_msgs/srv/CancelGoal').request_dds_name == \
        'action_msgs::srv::dds_::CancelGoal_Request_'


@pytest.mark.parametrize('part', PARTS)
@pytest.mark.parametrize('seed', range(2))
def test_action_types_serialize_like_rosbags(part, seed, store):
    message = random_part(part, seed)
    name = f'colvlm/action/Ask_{part}'
    ours = message.serialize(use_version_2=False)
    assert ours == bytes(store.serialize_cdr(to_action_rosbags(message, part, store), name))
    assert type(message).deserialize(ours).serialize(use_version_2=False) == ours


def to_action_rosbags(message, part: str, store):
    """to_rosbags for an action part: its own fields by hand, nested ones through to_rosbags
    (the action's parts are not in the library's plain message table)."""
    values = {}
    for field in spec(part).fields:
        value = getattr(message, field.name)
        if field.type.base.startswith('colvlm/action/'):
            value = to_action_rosbags(value, field.type.base.split('Ask_')[1], store)
        elif field.type.is_nested:
            value = to_rosbags(value, field.type.base, store)
        values[field.name] = value
    return store.types[f'colvlm/action/Ask_{part}'](**values)


@pytest.mark.parametrize('part', PARTS)
def test_action_type_hashes_match_rosbags(part, store):
    name = f'colvlm/action/Ask_{part}'
    if part.startswith(('SendGoal', 'GetResult')):
        service = SUPPORT.service(name.rsplit('_', 1)[0])
        ours = service.request_hash if part.endswith('Request') else service.response_hash
    else:
        ours = SUPPORT.message(name).type_hash
    assert ours == store.hash_rihs01(name)


def test_action_msgs_hashes_are_those_jazzy_generated():
    # From action_msgs' share/action_msgs/srv/CancelGoal.json of a Jazzy build.
    cancel = SUPPORT.service('action_msgs/srv/CancelGoal')
    assert cancel.request_hash == \
        'RIHS01_3d3c84653c1f96918086887e1dcb236faec88b81a5b14fd4cf4840065bcdf8af'
    assert cancel.response_hash == \
        'RIHS01_35e682cf3f510e83c70a82a4aac888496dedee56773bf9d8e5e0aa81f9e1c960'
    jazzy = get_typestore(Stores.ROS2_JAZZY)
    for name in ('action_msgs/msg/GoalStatusArray', 'unique_identifier_msgs/msg/UUID'):
        assert SUPPORT.message(name).type_hash == jazzy.hash_rihs01(name)


def test_every_feedback_number_says_its_unit():
    lines = Path(ASK.source).read_text(encoding='utf-8').splitlines()
    for part in (ASK.goal, ASK.result, ASK.feedback):
        for field in part.fields:
            line = next(line for line in lines if line.split()[1:2] == [field.name])
            if field.type.base in ('float32', 'float64', 'uint32', 'uint64', 'uint16'):
                assert '#' in line, f'{field.name} needs a unit comment'


@pytest.mark.parametrize('text, message', [
    ('int32 a\n---\nint32 b\n', 'Bad.action: an action needs exactly two'),
    ('int32 a\n---\n---\nflot32 c\n', "Bad.action:4: unknown type 'flot32'"),
])
def test_a_malformed_action_is_named_with_its_line(text, message):
    with pytest.raises(InterfaceError, match=message):
        parse_action(text, 'pkg/action/Bad', 'Bad.action')
