"""The edge's learned view score: question concepts, the probe file, and the bundled probe on
the bundled model's tower, on scenes it was not fitted on."""

import numpy as np
import pytest

from colvlm_bench.glyphvqa.scene import COLORS, SHAPES, render_scene
from colvlm_edge.view_score import (
    PROBE_FILE,
    ViewProbe,
    concept_names,
    load_view_scorer,
    matching_concepts,
)
from colvlm_edge.view_score import (
    question_concepts as read_concepts,
)
from colvlm_models.tiny_vlm import bundled_model_path

# Not the fit's stream (tools.fit_view_probe, 20261201) nor any data set's.
UNSEEN_SEED = 20261202


def test_questions_name_colours_and_kinds():
    def question_concepts(question):
        return read_concepts(question, concept_names(COLORS, ('sign', *SHAPES)))

    assert question_concepts('What is written on the red sign?') == (
        frozenset({'red'}), frozenset({'sign'}))
    assert question_concepts('What color is the circle?') == (frozenset(),
                                                              frozenset({'circle'}))
    assert question_concepts('Is there a Blue TRIANGLE?') == (frozenset({'blue'}),
                                                              frozenset({'triangle'}))
    assert question_concepts('How many squares are there?') == (frozenset(),
                                                                frozenset({'square'}))
    assert question_concepts('Is anything orange?') == (frozenset({'orange'}), frozenset())
    assert question_concepts('How far away is the wall?') is None
    assert question_concepts('Is the reddish signal on?') is None  # whole words only


def test_a_kind_without_a_colour_means_every_colour_and_back():
    concepts = concept_names(COLORS, ('sign', *SHAPES))
    assert [concepts[k] for k in matching_concepts('What color is the circle?', concepts)] \
        == [f'{color} circle' for color in ('red', 'green', 'blue', 'yellow', 'white',
                                            'orange', 'purple')]
    assert [concepts[k] for k in matching_concepts('Anything white?', concepts)] == [
        'white sign', 'white circle', 'white square', 'white triangle']
    assert matching_concepts('How far away is the wall?', concepts) == []


def test_a_probe_round_trips_and_a_bad_file_names_itself(tmp_path):
    concepts = concept_names(COLORS, ('sign', *SHAPES))
    probe = ViewProbe(np.ones((4, len(concepts)), np.float32),
                      np.zeros(len(concepts), np.float32), concepts, 'm', '{"a": 1}')
    probe.save(tmp_path / 'p.npz')
    loaded = ViewProbe.load(tmp_path / 'p.npz')
    assert loaded.concepts == concepts and loaded.token_dim == 4 and loaded.model == 'm'
    assert loaded.fit_record() == {'a': 1}
    np.testing.assert_array_equal(loaded.weights, probe.weights)
    np.testing.assert_array_equal(loaded.bias, probe.bias)
    with pytest.raises(ValueError, match='no view probe at .*missing.npz'):
        ViewProbe.load(tmp_path / 'missing.npz')
    np.savez(tmp_path / 'short.npz', weights=np.ones((4, 3)), bias=np.zeros(2),
             concepts=np.array(['a b', 'c d', 'e f']), model=np.array(''),
             metrics=np.array(''))
    with pytest.raises(ValueError, match=r'view probe .*short.npz: weights \(4, 3\), bias'):
        ViewProbe.load(tmp_path / 'short.npz')
    np.savez(tmp_path / 'partial.npz', weights=np.ones((4, 3)), bias=np.zeros(3))
    with pytest.raises(ValueError, match='view probe .*partial.npz: no concepts, model'):
        ViewProbe.load(tmp_path / 'partial.npz')
    (tmp_path / 'junk.npz').write_bytes(b'not a zip')
    with pytest.raises(ValueError, match='view probe .*junk.npz'):
        ViewProbe.load(tmp_path / 'junk.npz')


@pytest.fixture(scope='module')
def scorer():
    return load_view_scorer('bundled')


def test_the_bundled_probe_ships_next_to_the_model_with_its_fit():
    probe = ViewProbe.load(bundled_model_path() / PROBE_FILE)
    assert probe.concepts == concept_names(COLORS, ('sign', *SHAPES))
    assert probe.model == 'colvlm-tiny-llava'
    assert (bundled_model_path() / PROBE_FILE).stat().st_size < 100_000  # bytes
    assert set(probe.fit_record()['view_auroc']) == {'text', 'color', 'presence'}


def test_a_probe_of_another_width_is_refused(scorer, tmp_path):
    concepts = concept_names(COLORS, ('sign', *SHAPES))
    ViewProbe(np.ones((7, len(concepts)), np.float32), np.zeros(len(concepts), np.float32),
              concepts).save(tmp_path / 'wide.npz')
    with pytest.raises(ValueError, match='wide.npz reads 7 channels per token, model .* '
                                         'gives 128'):
        load_view_scorer('bundled', str(tmp_path / 'wide.npz'), backend=scorer.backend)
    with pytest.raises(ValueError, match='no view probe at .*absent.npz'):
        load_view_scorer('bundled', str(tmp_path / 'absent.npz'), backend=scorer.backend)


def test_a_view_with_a_red_sign_scores_above_one_without(scorer):
    """Ten pairs of unseen scenes, one with a red sign and one without. Measured with the
    bundled probe (fitted to the model's second copy): these 10 pairs all win, 9 of the
    red-sign views and 3 of the others score >= 0.5; over the first 400 scenes of the stream,
    111 of 117 sequential pairs win, the AUROC over all 117 x 283 pairs is 0.928, 87 % of the
    red-sign views and 18 % of the others score >= 0.5. (The first copy's probe: 0.991, 94 %
    and 3 %.) The camera-robust copy's probe (issue 18) wins 8 of these 10 pairs; its fit
    reports view AUROCs of 0.93 (text), 0.99 (colour) and 1.00 (presence) on its held-out
    scenes. The bars leave room for a refit."""
    question = 'What is written on the red sign?'
    with_red, without = [], []
    for index in range(200):
        scene = render_scene(np.random.default_rng(np.random.SeedSequence([UNSEEN_SEED,
                                                                           index])))
        group = with_red if any(o.name == 'red sign' for o in scene.objects) else without
        if len(group) < 10:
            group.append(scorer.score(scene.image, question))
        if len(with_red) == len(without) == 10:
            break
    assert len(with_red) == len(without) == 10
    assert all(s.concept == 'red sign' and s.seconds > 0 for s in with_red + without)
    wins = sum(a.score > b.score for a, b in zip(with_red, without, strict=True))
    assert wins >= 8, f'{wins} of 10'
    assert sum(s.score >= 0.5 for s in with_red) >= 7  # calibrated for views.min_score 0.5
    assert sum(s.score >= 0.5 for s in without) <= 4


def test_a_question_without_a_concept_abstains_and_tokens_are_cached(scorer, monkeypatch):
    tower_passes = []
    real_visual_tokens = scorer.backend.visual_tokens

    def counted(*args, **kwargs):
        tower_passes.append(args[1:])
        return real_visual_tokens(*args, **kwargs)

    monkeypatch.setattr(scorer.backend, 'visual_tokens', counted)
    scene = render_scene(np.random.default_rng(np.random.SeedSequence([UNSEEN_SEED, 999])))
    abstained = scorer.score(scene.image, 'How far away is the wall?')
    assert (abstained.score, abstained.concept) == (None, '')
    first = scorer.score(scene.image, 'Is there a red circle?', key='frame-1')
    again = scorer.score(scene.image, 'What color is the square?', key='frame-1')
    assert 0.0 <= first.score <= 1.0 and 0.0 <= again.score <= 1.0
    assert again.concept.endswith(' square')
    assert len(tower_passes) == 1  # frame-1's: an abstention runs no tower, the repeat is cached
    fresh = scorer.score(scene.image, 'What color is the square?', key='frame-2')
    assert len(tower_passes) == 2
    assert fresh.score == pytest.approx(again.score)
