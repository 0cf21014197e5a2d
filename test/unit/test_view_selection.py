"""View selection rules (colvlm_server/views.py): lexical names, learned scores, fallbacks and
the choice among several views' answers."""

import numpy as np
import pytest

from colvlm_msgs.constants import Status
from colvlm_server.gate import GateConfig, measure
from colvlm_server.pipeline import PassResult, PipelineResult
from colvlm_server.views import (
    ViewsConfig,
    ViewScore,
    lexical_matches,
    most_confident,
    needs_scores,
    select_views,
    strip_view_names,
    view_name,
)

NAMES = ['front', 'left', 'right', 'rear']


def test_view_names_are_the_last_part_of_the_namespace():
    assert view_name('/robot/front') == 'front'
    assert view_name('front_left/') == 'front_left'
    assert view_name('/') == ''


def test_lexical_matching_finds_view_mentions_and_longer_names_first():
    assert lexical_matches('What is written on the red sign on the LEFT camera?',
                           NAMES) == ['left']
    assert lexical_matches('What is written on the red sign?', NAMES) == []
    # A bare 'left' is a place in the image; 'leftover' is not 'left'; 'rear-view' is 'rear'.
    assert lexical_matches('Is the sign on the left?', NAMES) == []
    assert lexical_matches('Is the leftover red circle in the rear-view?', NAMES) == ['rear']
    assert lexical_matches('Is there a red circle in camera front?', NAMES) == ['front']
    names = ['front', 'front_left', 'left']
    assert lexical_matches('what does the front left camera see?', names) == ['front_left']
    assert lexical_matches('the front view or the left cam?', names) == ['front', 'left']


@pytest.mark.parametrize('question, stripped', [
    ('What is written on the red sign? (left camera)', 'What is written on the red sign?'),
    ('What is written on the red sign in the left camera?',
     'What is written on the red sign?'),
    ('What color is the circle on camera REAR?', 'What color is the circle?'),
    ('Is the sign on the left?', 'Is the sign on the left?'),
])
def test_view_mentions_can_be_taken_out_of_the_question(question, stripped):
    assert strip_view_names(question, NAMES) == stripped


def test_auto_prefers_a_named_view_and_asks_for_scores_otherwise():
    config = ViewsConfig(cameras=tuple(NAMES))
    assert not needs_scores('Is there a red circle in the rear view?', NAMES, config)
    chosen = select_views('Is there a red circle in the rear view?', NAMES, config)
    assert (chosen.views, chosen.how) == (('rear',), 'lexical')
    assert needs_scores('Is there a red circle?', NAMES, config)


def test_learned_scores_select_the_best_views_above_the_minimum():
    scores = {'front': ViewScore(0.1), 'left': ViewScore(0.9), 'right': ViewScore(0.7),
              'rear': ViewScore(None, error='timed out after 1 s')}
    config = ViewsConfig(cameras=tuple(NAMES), max_selected=2, min_score=0.5)
    chosen = select_views('What is written on the red sign?', NAMES, config, scores)
    assert (chosen.views, chosen.how) == (('left', 'right'), 'learned')
    assert 'left 0.90' in chosen.reason
    one = select_views('What is written on the red sign?', NAMES,
                       ViewsConfig(cameras=tuple(NAMES)), scores)
    assert one.views == ('left',)


def test_nothing_selected_falls_back_as_configured_and_says_why():
    low = {name: ViewScore(0.2) for name in NAMES}
    chosen = select_views('Is there a red circle?', NAMES, ViewsConfig(cameras=tuple(NAMES)),
                          low)
    assert chosen.views == tuple(NAMES) and chosen.how == 'fallback all'
    assert 'views.min_score 0.5' in chosen.reason
    failed = {name: ViewScore(None, error='no edge') for name in NAMES}
    first = select_views('Is there a red circle?', NAMES,
                         ViewsConfig(cameras=tuple(NAMES), fallback='first'), failed)
    assert (first.views, first.how) == (('front',), 'fallback first')
    assert 'front: no edge' in first.reason
    abstained = {name: ViewScore(None) for name in NAMES}
    why = select_views('How far is it?', NAMES, ViewsConfig(cameras=tuple(NAMES)), abstained)
    assert 'names nothing the scorers know' in why.reason
    lexical = select_views('Is there a red circle?', NAMES,
                           ViewsConfig(cameras=tuple(NAMES), select='lexical'))
    assert lexical.how == 'fallback all'


def test_all_sends_every_view():
    chosen = select_views('Is there a red circle in the left view?', NAMES,
                          ViewsConfig(cameras=tuple(NAMES), select='all'))
    assert chosen.views == tuple(NAMES) and chosen.how == 'all'


@pytest.mark.parametrize('fields, message', [
    ({'select': 'best'}, 'views.select must be one of'),
    ({'fallback': 'none'}, 'views.fallback must be one of'),
    ({'cameras': ('a/front', 'b/front')}, "share the view name 'front'"),
    ({'cameras': ('front', '/')}, "'/' is not a camera namespace"),
])
def test_bad_settings_name_the_parameter(fields, message):
    with pytest.raises(ValueError, match=message):
        ViewsConfig(**fields)


def _result(score, status=Status.OK):
    gate = None
    if score is not None:
        # A one-token answer whose top probability is exp(-score): min-entropy = score nats.
        top = float(np.exp(-score))
        gate = measure(np.array([[top] + [(1 - top) / 4] * 4]), GateConfig(threshold=10.0),
                       probabilities=True)
        assert gate.score == pytest.approx(score)
    first = PassResult('a', gate, 10, 2, 1.0, 1.0)
    return PipelineResult(answer='a', status=status, first=first)


def test_the_surest_answer_is_kept_and_unscored_ones_only_when_alone():
    results = [_result(0.6), _result(0.1), _result(0.3)]
    assert most_confident(results) == 1
    assert most_confident([_result(None), _result(0.9)]) == 1
    assert most_confident([_result(0.1, status=Status.MODEL_ERROR), _result(0.9)]) == 1
    assert most_confident([_result(None)]) == 0
    assert most_confident([_result(0.2), _result(0.2)]) == 0
