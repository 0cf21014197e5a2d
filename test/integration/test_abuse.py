"""issue 19's server probes against real processes over DDS (tools/abuse.py, which also prints
the memory figures; here only behaviour is checked): a frame stamped a day ahead never answers
a question, a burst of 200 queries gets 200 answers, 60 callers of colvlm/ask at once get one
reply each, and 3000 oversized token layers for one frame are refused while the server keeps
answering. One server and one edge serve the four probes; starting them (the server loads the
model) and the callers' processes make these slow. The same logic in milliseconds, on the
in-memory transport: test/unit/test_server_hostile_peers.py."""

from __future__ import annotations

from conftest import module_dds_env
import pytest

from colvlm_msgs.constants import Status
from tools.abuse import BURST, Pair, probe_asks, probe_burst, probe_future, probe_layers

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def pair():
    with module_dds_env() as env:
        started = Pair(env)
        try:
            yield started.start(), env
        finally:
            started.close()


def test_a_frame_stamped_a_day_ahead_never_answers(pair):
    figures = probe_future(pair[0])
    assert figures['answers about the future frame'] == 0, figures
    assert sum(figures['statuses'].values()) == figures['of'], figures
    assert figures['stamped ahead'] >= 2 and figures['refusal lines'] >= 1, figures


def test_a_burst_of_queries_gets_one_answer_each(pair):
    figures = probe_burst(pair[0])
    assert figures['answers received'] == BURST and 'BUSY' in figures['statuses'], figures


def test_concurrent_asks_get_one_reply_each(pair):
    figures = probe_asks(*pair, callers=60)
    assert figures['callers ready'] == 60, figures
    # Each a status: BUSY beyond the queue, an answer (or, on a loaded machine, a crop that
    # came too late: CROP_UNAVAILABLE) for those that waited; never no reply.
    assert figures['replies'] == 60 and set(figures['statuses']) <= set(Status.__members__), \
        figures
    assert 'BUSY' in figures['statuses'], figures


def test_oversized_layers_are_refused_and_the_server_keeps_answering(pair):
    figures = probe_layers(pair[0])
    assert figures['answer after'] == 'OK', figures
    assert figures['dropped frames'] > 0 and figures['refusal lines'] >= 1, figures
