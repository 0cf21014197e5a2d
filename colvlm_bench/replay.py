"""Offline evaluation over a rosbag2: the questions asked, and the bag frames they are about.

Questions come from a JSONL file (`read_questions_file`; a bad line is reported with its
number and skipped) or from a `colvlm/msg/Query` topic of the bag (`read_bag_queries`).
Each names its frame by index on the image topic, by stamp, or by a data set's `image` (the
frame showing that picture, found by content: replay_match). `BagFrames` reads the image
topic once through the edge's `BagSource` and keeps only the originals asked about; it is a
frame provider for `Evaluator`. This module knows files and bags, not models or policies.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
import json
from pathlib import Path

import numpy as np

from colvlm_bench.replay_match import ImageMatcher
from colvlm_edge.sources.bag import BagSource
from colvlm_msgs import stamps
from colvlm_msgs.bag import BagError, colvlm_typestore

QUERY_TYPE = 'colvlm/msg/Query'
DEFAULT_KIND = 'other'  # the kind of a question that names none (accuracy_by_kind key)
_KEYS = ('stamp_ns', 'frame_index', 'image', 'question', 'answers', 'kind', 'target', 'id')


@dataclass(frozen=True)
class FrameRef:
    """Which frame of the image topic a question is about."""

    index: int | None = None     # position among the topic's messages, 0-based
    stamp_ns: int | None = None  # ns; the newest frame at or before it (exactly it if exact)
    exact: bool = False
    image: str | None = None     # a data set picture's path: the frame that shows it


@dataclass(frozen=True)
class ReplayQuestion:
    id: str
    question: str
    answers: tuple[str, ...]     # empty: answered but not scored
    kind: str
    target: tuple[int, int, int, int] | None  # evidence box in original pixels
    frame: FrameRef
    origin: str                  # 'FILE:LINE' or 'TOPIC#N', for messages about it


class _LineError(ValueError):
    pass


def _int(record: dict, key: str, minimum: int = 0) -> int:
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _LineError(f'{key!r} must be an integer >= {minimum}, got {value!r}')
    return value


def _frame_ref(record: dict, folder: Path) -> FrameRef:
    named = [k for k in ('stamp_ns', 'frame_index', 'image') if k in record]
    if len(named) != 1:
        raise _LineError("needs exactly one of 'stamp_ns', 'frame_index' and 'image'")
    if 'frame_index' in record:
        return FrameRef(index=_int(record, 'frame_index'))
    if 'stamp_ns' in record:
        return FrameRef(stamp_ns=_int(record, 'stamp_ns', 1))
    image = record['image']
    if not isinstance(image, str) or not image.strip():
        raise _LineError(f"'image' must be a non-empty path string, got {image!r}")
    return FrameRef(image=str(folder / image))  # relative to the data set folder


def _parse_line(record: object, line_number: int, folder: Path) -> tuple:
    """(id, question, answers, kind, target, FrameRef) of one line's JSON value."""
    if not isinstance(record, dict):
        raise _LineError(f'expected a JSON object, got {type(record).__name__}')
    unknown = sorted(set(record) - set(_KEYS))
    if unknown:
        raise _LineError(f'unknown key {unknown[0]!r} (known: {", ".join(_KEYS)})')
    frame = _frame_ref(record, folder)
    question = record.get('question')
    if not isinstance(question, str) or not question.strip():
        raise _LineError(f"'question' must be a non-empty string, got {question!r}")
    answers = record.get('answers', [])
    if not isinstance(answers, list) or not all(isinstance(a, str) and a.strip()
                                                for a in answers):
        raise _LineError(f"'answers' must be a list of non-empty strings, got {answers!r}")
    kind = record.get('kind', DEFAULT_KIND)
    if not isinstance(kind, str) or not kind.strip():
        raise _LineError(f"'kind' must be a non-empty string, got {kind!r}")
    target = record.get('target')
    if target is not None:
        if (not isinstance(target, list) or len(target) != 4
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in target)
                or not (0 <= target[0] < target[2] and 0 <= target[1] < target[3])):
            raise _LineError(f"'target' must be null or [x0, y0, x1, y1] integers with "
                             f'0 <= x0 < x1 and 0 <= y0 < y1, got {target!r}')
        target = tuple(target)
    question_id = record.get('id', f'line{line_number}')
    if not isinstance(question_id, str) or not question_id.strip():
        raise _LineError(f"'id' must be a non-empty string, got {question_id!r}")
    return question_id, question, tuple(answers), kind, target, frame


def read_questions_file(path: str | Path) -> tuple[list[ReplayQuestion], list[str]]:
    """The questions of a JSONL file and one warning per line skipped (number and why).

    OSError when the file cannot be read at all.
    """
    path = Path(path)
    questions: list[ReplayQuestion] = []
    problems: list[str] = []
    seen: set[str] = set()
    with open(path, encoding='utf-8') as stream:
        for line_number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise _LineError(f'not valid JSON: {error.msg}') from None
                question_id, text, answers, kind, target, frame = _parse_line(
                    record, line_number, path.parent)
                if question_id in seen:
                    raise _LineError(f'duplicate id {question_id!r}')
            except _LineError as error:
                problems.append(f'{path}:{line_number}: {error}; line skipped')
                continue
            seen.add(question_id)
            questions.append(ReplayQuestion(question_id, text, answers, kind, target, frame,
                                            f'{path}:{line_number}'))
    return questions, problems


def read_bag_queries(reader, bag: str,
                     topic: str | None = None) -> tuple[list[ReplayQuestion], list[str]]:
    """The questions of a bag's Query topic (default: its first) and one warning per message
    skipped. A query names its frame by `frame_stamp` (exactly), or else asks about the newest
    frame at its header stamp (log time when zero). Query topics carry no reference answers:
    these questions are answered, not scored. BagError when there is no such topic."""
    connections = [c for c in reader.connections if c.msgtype == QUERY_TYPE
                   and (topic is None or c.topic == topic)]
    if not connections:
        topics = {c.topic: c.msgtype for c in reader.connections}
        wanted = f'topic {topic!r} of type {QUERY_TYPE}' if topic else f'{QUERY_TYPE} topic'
        raise BagError(f'bag {bag!r} has no {wanted} (pass --questions FILE); its topics: '
                       f'{topics}')
    store = colvlm_typestore()
    expected = store.hash_rihs01(QUERY_TYPE)
    connections = [c for c in connections if c.topic == connections[0].topic]
    for connection in connections:
        if connection.digest and connection.digest != expected:
            raise BagError(f'bag {bag!r}: {connection.topic} holds a {QUERY_TYPE} of another '
                           f'definition ({connection.digest}, this colvlm has {expected})')
    questions: list[ReplayQuestion] = []
    problems: list[str] = []
    name = connections[0].topic
    for number, (_, log_ns, raw) in enumerate(reader.messages(connections=connections)):
        origin = f'{name}#{number}'
        try:
            query = store.deserialize_cdr(raw, QUERY_TYPE)
        except Exception as error:  # any decoding failure of one message is the same to us
            problems.append(f'{origin}: undecodable Query ({error}); skipped')
            continue
        if not query.question.strip():
            problems.append(f'{origin}: empty question; skipped')
            continue
        wanted = stamps.to_ns(query.frame_stamp)
        frame = (FrameRef(stamp_ns=wanted, exact=True) if wanted else
                 FrameRef(stamp_ns=stamps.to_ns(query.header.stamp) or log_ns))
        questions.append(ReplayQuestion(query.query_id or f'query{number}', query.question,
                                        (), DEFAULT_KIND, None, frame, origin))
    return questions, problems


class BagFrames:
    """The originals of one image topic that some questions ask about, read in one pass.

    `key(ref)` names the frame a FrameRef resolves to (None: no such frame); `original(key)`
    returns it, as the Evaluator's frame provider.
    """

    def __init__(self, source: BagSource, refs: list[FrameRef]) -> None:
        self.topic = source.topic
        self.matcher = ImageMatcher([r.image for r in refs if r.image is not None])
        self.count = 0  # messages on the topic, decodable or not
        self._images: dict[str, np.ndarray] = {}
        self._by_index: dict[int, str] = {}
        self._by_stamp: dict[int, str] = {}       # exact stamps asked for
        self._at_or_before: dict[int, str] = {}   # stamps asked for, by the frame before
        indices = {r.index for r in refs if r.index is not None}
        exact = {r.stamp_ns for r in refs if r.stamp_ns is not None and r.exact}
        before = sorted({r.stamp_ns for r in refs if r.stamp_ns is not None and not r.exact})
        previous: tuple[str, int, np.ndarray] | None = None
        yielded = 0
        for frame in source:
            index = yielded + source.dropped  # skipped messages keep their places
            yielded += 1
            key = f'frame{index}'
            self.matcher.offer(key, frame.image)
            if index in indices:
                self._keep(key, frame.image, self._by_index, index)
            if frame.stamp_ns in exact:
                self._keep(key, frame.image, self._by_stamp, frame.stamp_ns)
            if previous is not None:
                self._keep_before(previous, before, frame.stamp_ns)
            previous = (key, frame.stamp_ns, frame.image)
        if previous is not None:
            self._keep_before(previous, before, None)
        self.count = yielded + source.dropped

    def _keep(self, key: str, image: np.ndarray, table: dict, wanted: int) -> None:
        table[wanted] = key
        self._images[key] = image

    def _keep_before(self, previous: tuple, before: list[int], next_stamp: int | None) -> None:
        """Give `previous` the asked stamps in [its stamp, next_stamp)."""
        key, stamp_ns, image = previous
        end = len(before) if next_stamp is None else bisect_left(before, next_stamp)
        for wanted in before[bisect_left(before, stamp_ns):end]:
            self._keep(key, image, self._at_or_before, wanted)

    def key(self, ref: FrameRef) -> str | None:
        if ref.image is not None:
            return self.matcher.key(ref.image)
        if ref.index is not None:
            return self._by_index.get(ref.index)
        table = self._by_stamp if ref.exact else self._at_or_before
        return table.get(ref.stamp_ns)

    def original(self, key: str) -> np.ndarray:
        image = self._images.get(key)
        image = self.matcher.image(key) if image is None else image
        if image is not None:
            return image  # (H, W, 3) uint8 BGR
        raise OSError(f'frame {key} of {self.topic} was not read')


def describe(ref: FrameRef) -> str:
    """A FrameRef in words, for messages about frames that are missing."""
    if ref.index is not None:
        return f'frame_index {ref.index}'
    if ref.image is not None:
        return f'frame showing {ref.image}'
    return f'{"frame_stamp" if ref.exact else "a frame at or before stamp_ns"} {ref.stamp_ns}'

