"""One answer from several cameras: select views, answer about each, keep the surest one,
and count on the Answer every byte and millisecond the selection cost.

`answer_views` runs the steps through two callables the node passes in (scoring every edge,
answering about one view), so it is tested without a transport or a model; `fill_views`
writes the outcome on an Answer. A view whose frame could not be had is named in the answer's
status message; none at all is Rejected(NO_FRAME), with the scores' bytes still counted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
import time

from colvlm_msgs.constants import Status
from colvlm_server.answers import add_bytes, append_message, fill_answer
from colvlm_server.jobs import Rejected
from colvlm_server.pipeline import PipelineResult
from colvlm_server.views import (
    Selection,
    ViewsConfig,
    ViewScore,
    most_confident,
    needs_scores,
    select_views,
    strip_view_names,
)

# score(question) -> (scores by view name, uplink bytes, downlink bytes)
ScoreViews = Callable[[str], tuple[dict[str, ViewScore], int, int]]
# answer_view(view name, question, its score or None) -> (frame, frame_id, result);
# Rejected when the view's frame cannot be had.
AnswerView = Callable[[str, str, ViewScore | None], tuple[object, str, PipelineResult]]


@dataclass
class ViewAnswers:
    """What answering about the selected views produced."""

    selection: Selection
    answered: list[tuple[str, object, str, PipelineResult]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # 'name: why' per view without a frame
    score_uplink_bytes: int = 0
    score_downlink_bytes: int = 0
    select_ms: float = 0.0


def answer_views(question: str, names: Sequence[str], settings: ViewsConfig,
                 score: ScoreViews, answer_view: AnswerView) -> ViewAnswers:
    """Select the views `question` needs among `names` and answer about each of them."""
    started = time.perf_counter()
    scores, up, down = {}, 0, 0
    if needs_scores(question, names, settings):
        scores, up, down = score(question)
    selection = select_views(question, names, settings, scores)
    if settings.strip_names:
        question = strip_view_names(question, names)
    views = ViewAnswers(selection, score_uplink_bytes=up, score_downlink_bytes=down,
                        select_ms=(time.perf_counter() - started) * 1e3)
    for name in selection.views:
        try:
            frame, frame_id, result = answer_view(name, question, scores.get(name))
        except Rejected as rejection:
            views.missing.append(f'{name}: {rejection}')
            continue
        views.answered.append((name, frame, frame_id, result))
    return views


def fill_views(answer, views: ViewAnswers, cameras: dict[str, str]) -> None:
    """The surest view's answer on `answer`, every view's bytes counted; `cameras` maps view
    names to camera namespaces. Rejected(NO_FRAME) when no view could be answered about."""
    answer.select_ms = views.select_ms
    answer.view_selection = views.selection.how
    answer.uplink_score_bytes = views.score_uplink_bytes
    if not views.answered:  # the scores still crossed the link
        answer.uplink_bytes = views.score_uplink_bytes
        answer.downlink_bytes = views.score_downlink_bytes
        raise Rejected(Status.NO_FRAME, f'no frame from the selected views '
                                        f'({views.selection.how}: {"; ".join(views.missing)})')
    best = most_confident([result for *_, result in views.answered])
    name, frame, frame_id, result = views.answered[best]
    fill_answer(answer, result, frame.stamp_ns, frame_id)
    answer.camera = cameras[name]
    answer.views_sent = [name] + [other for other, *_ in views.answered if other != name]
    for other, _, _, extra in views.answered:  # every view's bytes crossed the link
        if other != name:
            add_bytes(answer, extra)
    answer.uplink_bytes += views.score_uplink_bytes
    answer.downlink_bytes += views.score_downlink_bytes
    note = (f'views {", ".join(answer.views_sent)} by {views.selection.how} '
            f'({views.selection.reason})')
    if views.missing:
        note += f'; without {"; ".join(views.missing)}'
    append_message(answer, note)
