"""colvlm/ask as an action between processes over real DDS: a server and an edge process on
the bundled model, and this process as a raw rcl_action client (test/action_client.py). A
goal reports every stage of a two-stage answer and ends SUCCEEDED with the Answer; once the
edge is gone, a goal waiting for its frame is cancelled and answered CANCELED at once; and
`colvlm ask --action` prints the stages as they come. The node logic of the action is tested
on the in-memory transport in test/unit/test_ask_action.py."""

from __future__ import annotations

import signal
import uuid

from action_client import CANCELED, ERROR_NONE, SUCCEEDED, TIMEOUT_S, RawAskClient
from processes import START_TIMEOUT_S, ask_in_process, colvlm

from colvlm_msgs.constants import Decision, Status
from colvlm_msgs.transport import create_node

NAMESPACE = 'cam0'
CROP_STAGES = ['frame', 'first_pass', 'crop_requested', 'crop_received', 'second_pass']



def _check_stages(client: RawAskClient) -> None:
    goal_id, accepted = client.send_goal('What is written on the sign?', policy='always')
    assert accepted.accepted
    response = client.get_result(goal_id)
    answer = response.result.answer
    assert response.status == SUCCEEDED and answer.status == Status.OK, answer.status_message
    assert answer.decision == Decision.LOCAL_CROP and answer.query_id == 'q1'
    assert client.stages(goal_id, until='second_pass') == CROP_STAGES
    feedback = {f.stage_name: f for f in client.feedback[goal_id]}
    assert feedback['first_pass'].refine and feedback['first_pass'].refinement == 'crop'
    assert feedback['first_pass'].answer == answer.first_pass.answer
    assert feedback['crop_received'].roi == answer.roi
    assert feedback['second_pass'].answer == answer.answer
    client.wait_status(goal_id, SUCCEEDED)


def _check_cancel(client: RawAskClient) -> None:
    goal_id, _ = client.send_goal('Anything new?', fresh_frame=True)
    cancelled = client.cancel_goal(goal_id)
    assert cancelled.return_code == ERROR_NONE
    # The server would wait for the gone edge's frame for two minutes (frame.fresh_timeout_s).
    response = client.get_result(goal_id)
    assert response.status == CANCELED
    assert response.result.answer.status == Status.CANCELED
    assert 'cancelled by the caller' in response.result.answer.status_message
    client.wait_status(goal_id, CANCELED)


def test_ask_action_between_processes_over_dds(dds_env, capsys):
    server = colvlm('server', '--namespace', NAMESPACE, '-p', 'policy=global',
                    '-p', 'frame.fresh_timeout_s=120', '-p', 'frame.max_age_s=0', env=dds_env)
    edge = colvlm('edge', '--source', 'synthetic', '--namespace', NAMESPACE,
                  '-p', 'source.fps=2', env=dds_env)
    node = create_node(f'test_action_{uuid.uuid4().hex[:6]}', NAMESPACE, backend='dds')
    try:
        client = RawAskClient(node)
        server.wait_for(r'\bready: model', START_TIMEOUT_S)
        edge.wait_for(r'\bready: ', START_TIMEOUT_S)
        assert client.wait_ready(), server.tail()
        _check_stages(client)
        code, out, err = ask_in_process(capsys, 'What is written?', '--namespace', NAMESPACE,
                                         '--action', '--policy', 'always')
        assert code == 0, err
        lines = out.splitlines()
        assert [line.split(':')[0] for line in lines[:5]] == CROP_STAGES, out
        assert 'status: OK' in out and lines.index('status: OK (policy always refines)') > 4
        edge.stop(signal.SIGINT, TIMEOUT_S)
        _check_cancel(client)
    finally:
        edge.kill()
        node.shutdown()
        server.kill()  # its worker still waits for the cancelled query's frame
