"""View selection for a server of several cameras (LiteVLM, ../shared/seeds/002): decide which
cameras' global frames a question needs before any of them crosses the link.

Two signals, cheapest first:
- **lexical**: the question names a view ("... on the left camera?"): the views whose name
  (the last part of the camera namespace, '_' read as a space) occurs in it next to
  'camera', 'cam' or 'view' ('left' alone is a place in the image);
- **learned**: each edge scores its own newest frame for the question (`colvlm/score_view`,
  a per-cell concept probe on the vision tower's features, colvlm_edge/view_score.py) and
  answers with a probability and a few bytes; the best-scoring views are sent.

`select_views` is the decision alone, without a wire, so the node and the benchmark share it.
This module knows names, scores and rules, not topics, models or images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
import re

from colvlm_msgs.constants import Status
from colvlm_msgs.param_fields import check_fields, parameter

SELECTIONS = ('auto', 'lexical', 'learned', 'all')
FALLBACKS = ('all', 'first')


@dataclass(frozen=True)
class ViewsConfig:
    """The server's `views.*` parameters."""

    cameras: tuple[str, ...] = parameter(
        'views.cameras', (), 'several cameras: their namespaces, relative or absolute; a query '
        'naming no camera is answered from the views selected for it; [] = camera.default')
    select: str = parameter(
        'views.select', 'auto', "how views are chosen: 'lexical' (view names in the question), "
        "'learned' (each edge's colvlm/score_view), 'auto' (lexical, else learned), 'all'",
        choices=SELECTIONS)
    max_selected: int = parameter('views.max_selected', 1, 'views sent per query at most',
                                  unit='views', min=1, max=64)
    min_score: float = parameter('views.min_score', 0.5, 'a learned score below this does not '
                                 'select its view', min=0.0, max=1.0)
    fallback: str = parameter('views.fallback', 'all', "when nothing selects a view: 'all' "
                              "views or the 'first'", choices=FALLBACKS)
    strip_names: bool = parameter(
        'views.strip_names', True, "the model gets the question without the view it names "
        "('... (left camera)'): the bundled model never saw camera names")
    score_timeout_s: float = parameter(
        'views.score_timeout_s', 1.0, "wait for the edges' view scores at most this long",
        unit='s', min=0.01, max=600.0)

    def __post_init__(self) -> None:
        check_fields(self)
        names = [view_name(camera) for camera in self.cameras]
        for camera, name in zip(self.cameras, names, strict=True):
            if not name:
                raise ValueError(f'views.cameras: {camera!r} is not a camera namespace')
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f'views.cameras: two cameras share the view name '
                             f'{repeated[0]!r}; the last part of each namespace must differ')

    @property
    def several(self) -> bool:
        return len(self.cameras) > 1


@dataclass(frozen=True)
class ViewScore:
    """One edge's answer to colvlm/score_view; `score` None = it abstained or failed."""

    score: float | None
    stamp_ns: int = 0  # the frame scored
    concept: str = ''
    error: str = ''  # why there is no score, when the edge failed or timed out


@dataclass(frozen=True)
class Selection:
    views: tuple[str, ...]  # view names, best first
    how: str  # 'lexical' | 'learned' | 'all' | 'fallback all' | 'fallback first'
    reason: str  # one line: what decided


def view_name(camera: str) -> str:
    """'front' for '/robot/front', 'front_left' for 'front_left/'."""
    return camera.strip('/').rsplit('/', 1)[-1]


VIEW_WORDS = ('camera', 'cameras', 'cam', 'view', 'views')  # what makes a name a view's


def _phrase(name: str) -> str:
    """The regex of a view mention: 'left camera', 'camera left', 'front_left view'; a bare
    'left' is a place in the image, not a camera."""
    words = r'\s+'.join(re.escape(part) for part in name.split('_') if part)
    qualifier = '|'.join(VIEW_WORDS)
    return rf'\b(?:{words}\s+(?:{qualifier})|(?:{qualifier})\s+{words})\b'


def lexical_matches(question: str, names: Sequence[str]) -> list[str]:
    """The views the question mentions ('... on the left camera?'), in `names` order; a
    longer name that contains a shorter one ('front_left' and 'left') claims the words first."""
    text = question.lower().replace('_', ' ').replace('-', ' ')
    found = []
    for name in sorted(names, key=len, reverse=True):
        pattern = _phrase(name.lower())
        if re.search(pattern, text):
            found.append(name)
            text = re.sub(pattern, ' ', text)
    return [name for name in names if name in found]


def strip_view_names(question: str, names: Sequence[str]) -> str:
    """The question without its view mentions, for a model that never saw camera names:
    'What is written on the red sign? (left camera)' -> 'What is written on the red sign?'.
    A mention with its parentheses and a leading 'in/on/from/at the' goes."""
    text = question
    for name in sorted(names, key=len, reverse=True):
        core = _phrase(name.lower()).replace(r'\s+', r'[\s_-]+')
        pattern = rf'\s*\(?\s*(?:\b(?:in|on|from|at)\s+)?(?:\bthe\s+)?{core}\s*\)?'
        text = re.sub(pattern, ' ', text, flags=re.IGNORECASE)
    text = re.sub(r'\s+([?.!,])', r'\1', re.sub(r'\s{2,}', ' ', text))
    return text.strip()


def select_views(question: str, names: Sequence[str], config: ViewsConfig,
                 scores: Mapping[str, ViewScore] | None = None) -> Selection:
    """Which views to send for `question`. `scores` are the learned scores by view name
    (needed for 'learned', and for 'auto' when no view is named); ask `needs_scores` first."""
    if config.select == 'all':
        return Selection(tuple(names), 'all', 'views.select all')
    if config.select in ('auto', 'lexical'):
        named = lexical_matches(question, names)
        if named:
            return Selection(tuple(named[:config.max_selected]), 'lexical',
                             f'the question names {", ".join(named)}')
        if config.select == 'lexical':
            return _fallback(names, config, 'the question names no view')
    scored = {name: s for name, s in (scores or {}).items() if s.score is not None}
    if not scored:
        why = '; '.join(f'{name}: {s.error}' for name, s in (scores or {}).items() if s.error)
        return _fallback(names, config, 'no view has a learned score' + (
            f' ({why})' if why else ' (the question names nothing the scorers know)'))
    ranked = sorted(scored, key=lambda name: (-scored[name].score, list(names).index(name)))
    chosen = [name for name in ranked if scored[name].score >= config.min_score]
    summary = ', '.join(f'{name} {scored[name].score:.2f}' for name in ranked)
    if not chosen:
        return _fallback(names, config, f'no score reaches views.min_score '
                                        f'{config.min_score:g} ({summary})')
    return Selection(tuple(chosen[:config.max_selected]), 'learned', f'scores {summary}')


def needs_scores(question: str, names: Sequence[str], config: ViewsConfig) -> bool:
    """Whether `select_views` would use learned scores for this question."""
    return config.select == 'learned' or (
        config.select == 'auto' and not lexical_matches(question, names))


def _fallback(names: Sequence[str], config: ViewsConfig, why: str) -> Selection:
    views = tuple(names) if config.fallback == 'all' else tuple(names[:1])
    return Selection(views, f'fallback {config.fallback}', why)


def most_confident(results: Sequence) -> int:
    """Which of several views' PipelineResults answers: the one whose last pass was surest
    (lowest gate score, nats); one without usable scores only when no other has them, and
    the earlier (better selected) view on a tie."""
    def key(index: int) -> tuple[int, float, int]:
        result = results[index]
        last = result.second or result.first
        if result.status == Status.MODEL_ERROR or last is None or last.gate is None:
            return (1, 0.0, index)
        return (0, last.gate.score, index)
    return min(range(len(results)), key=key)
