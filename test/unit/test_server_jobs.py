"""The server's pure pieces without a transport: admission and the job queue, PipelineResult
-> Answer, and one answer from several views with every byte counted."""

from __future__ import annotations

import threading

import pytest

from colvlm_msgs.constants import Decision, Status
from colvlm_msgs.typesupport import message_class
from colvlm_server.answers import fill_answer, new_answer
from colvlm_server.gate import GateConfig
from colvlm_server.jobs import Job, JobQueue, Rejected, check_query
from colvlm_server.pipeline import PassResult, PipelineResult
from colvlm_server.view_answers import answer_views, fill_views
from colvlm_server.views import ViewsConfig, ViewScore

Query = message_class('colvlm/msg/Query')
Answer = message_class('colvlm/msg/Answer')


def _job(name: str) -> Job:
    return Job(Query(query_id=name), lambda answer: None, 0.0, 0, 'global', None, None)


@pytest.mark.parametrize('fields, policy, why', [
    ({'question': ' '}, 'global', 'empty question'),
    ({'question': 'x' * 11}, 'global', 'question of 11 characters; at most 10'),
    ({'question': 'Why?'}, 'sometimes', "unknown policy 'sometimes'"),
    ({'question': 'Why?', 'max_new_tokens': 10**6}, 'global', 'max_new_tokens must be <='),
])
def test_bad_queries_are_rejected_naming_the_culprit(fields, policy, why):
    with pytest.raises(Rejected, match=why) as rejected:
        check_query(Query(**fields), policy, question_max_chars=10)
    assert rejected.value.status == Status.BAD_REQUEST
    check_query(Query(question='Why?'), 'global', question_max_chars=10)  # a good one passes


def test_the_queue_runs_in_order_refuses_beyond_its_size_and_hands_back_the_waiting():
    started, release, ran = threading.Event(), threading.Event(), []

    def run(job: Job) -> None:
        started.set()
        release.wait(10)
        ran.append(job.query.query_id)

    jobs = JobQueue(2, run)
    jobs.submit(_job('a'))
    assert started.wait(10)
    jobs.submit(_job('b'))
    jobs.submit(_job('c'))
    with pytest.raises(Rejected, match='2 queries are already waiting') as busy:
        jobs.submit(_job('d'))
    assert busy.value.status == Status.BUSY and jobs.waiting() == 2
    stopper = threading.Thread(target=lambda: left.extend(jobs.stop(10)))
    left: list[Job] = []
    stopper.start()
    release.set()
    stopper.join(10)
    assert ran == ['a'] and [job.query.query_id for job in left] == ['b', 'c']
    with pytest.raises(Rejected, match='shutting down'):
        jobs.submit(_job('e'))


def _result(answer='red', status='ok', decision='global', entropy=0.1, **costs):
    import numpy as np

    from colvlm_server.gate import GateMetrics

    tokens = np.array([entropy])
    gate = GateMetrics(entropy, entropy, entropy, tokens, tokens, tokens, 2.0, 'max', 0.5,
                       'min_entropy')
    first = PassResult(answer, gate, 30, 2, 2e9, 5.0)
    return PipelineResult(answer=answer, status=Status[status.upper()],
                          decision=Decision[decision.upper()], reason='why',
                          first=first, **costs)


def test_a_result_fills_every_field_it_has():
    answer = new_answer(Answer, Query(query_id='q', question='Why?'), 'always', '/cam0',
                        'tiny', GateConfig())
    result = _result(status='crop_unavailable', decision='fallback', global_bytes=100,
                     crop_bytes=0, downlink_bytes=7, locate_ms=1.5)
    fill_answer(answer, result, 5_000_000_001, 'camera')
    assert (answer.query_id, answer.policy, answer.camera, answer.model_id) == \
        ('q', 'always', '/cam0', 'tiny')
    assert answer.status == Status.CROP_UNAVAILABLE and answer.decision == Decision.FALLBACK
    assert (answer.frame_stamp.sec, answer.frame_stamp.nanosec) == (5, 1)
    assert answer.first_pass.ran and answer.first_pass.gflops == 2.0
    assert not answer.second_pass.ran and answer.roi.width == 0
    assert (answer.uplink_bytes, answer.downlink_bytes, answer.locate_ms) == (100, 7, 1.5)
    assert len(Answer.serialize(answer)) > 0  # every value fits its wire type


class _Frame:
    stamp_ns = 42


SETTINGS = ViewsConfig(cameras=('/a', '/b', '/c'), max_selected=2)


def _views(scores, frames):
    asked = []

    def score(question):
        return scores, 30, 60

    def answer_view(name, question, view_score):
        asked.append((name, question))
        if name not in frames:
            raise Rejected(Status.NO_FRAME, 'no fresh frame')
        return _Frame(), f'{name}_frame', frames[name]

    return answer_views('Where is the red sign?', ['a', 'b', 'c'], SETTINGS, score,
                        answer_view), asked


def test_views_answer_with_the_surest_and_count_every_view():
    scores = {'a': ViewScore(0.9), 'b': ViewScore(0.8), 'c': ViewScore(0.1)}
    views, asked = _views(scores, {'a': _result('red', entropy=0.5, global_bytes=100),
                                   'b': _result('blue', entropy=0.1, global_bytes=200)})
    assert [name for name, _ in asked] == ['a', 'b']
    answer = Answer()
    fill_views(answer, views, {'a': '/a', 'b': '/b', 'c': '/c'})
    assert answer.view_selection == 'learned' and answer.uplink_score_bytes == 30
    assert answer.uplink_global_bytes == 300 and answer.uplink_bytes == 330
    assert answer.downlink_bytes == 60 and sorted(answer.views_sent) == ['a', 'b']
    assert answer.views_sent[0] == 'b' and answer.camera == '/b'  # the surer answer
    assert answer.answer == 'blue' and answer.header.frame_id == 'b_frame'
    assert 'views ' in answer.status_message and 'by learned' in answer.status_message


def test_views_without_any_frame_are_no_frame_with_the_scores_counted():
    scores = {'a': ViewScore(0.9), 'b': ViewScore(0.8), 'c': ViewScore(0.1)}
    views, _ = _views(scores, {})
    answer = Answer()
    with pytest.raises(Rejected, match=r'learned: a: no fresh frame; b: no fresh frame') as no:
        fill_views(answer, views, {})
    assert no.value.status == Status.NO_FRAME
    assert (answer.uplink_bytes, answer.downlink_bytes) == (30, 60)
