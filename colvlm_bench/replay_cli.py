"""Evaluate policies offline over a recorded bag: its image topic through the edge and server.

`colvlm replay BAG --questions FILE --out DIR` reads the frames the questions ask about from
BAG's image topic (sensor_msgs Image or CompressedImage; --topic, default the first) and
runs them through the same in-process edge, pipeline and report as `colvlm eval`: the same
metrics.json keys, records.jsonl and plots. FILE is JSONL, one question a line:
{"frame_index": N | "stamp_ns": NS | "image": PATH, "question": "...", "answers": [...],
"kind": "...", "target": [x0, y0, x1, y1], "id": "..."} (answers, kind, target, id optional;
a question without answers is answered but not scored); "image" is a data set's own line: the
frame showing that picture (relative to FILE's folder) is found by content. A target the
bag's frames cannot be scored against (resized global frames) is dropped, and said so.
Without --questions the questions come from the bag's colvlm/msg/Query topic. BAG or FILE
'sample' is the shipped sample.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys

PROG = 'colvlm replay'
SAMPLE = 'samples/glyphvqa-replay'  # relative to the share directory: bag/, questions.jsonl


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from colvlm_bench.eval_cli import add_policy_arguments
    parser.add_argument('bag', metavar='BAG',
                        help="rosbag2 folder or storage file (mcap, sqlite3); 'sample' = the "
                             'shipped sample bag')
    parser.add_argument('--questions', metavar='FILE',
                        help="questions JSONL; 'sample' = the sample's (default: the bag's "
                             'colvlm/msg/Query topic)')
    parser.add_argument('--topic', default=None,
                        help='image topic (default: the first Image/CompressedImage topic)')
    parser.add_argument('--query-topic', default=None,
                        help='Query topic when there is no --questions (default: the first)')
    add_policy_arguments(parser, default_policy='entropy')


def _sample(name: str, part: str) -> str:
    if name != 'sample':
        return name
    from colvlm_msgs.resources import find
    return str(find(f'{SAMPLE}/{part}'))


def _warn(message: str) -> None:
    print(f'{PROG}: {message}', file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from colvlm_bench.eval_cli import parse_policies

    try:
        policies = parse_policies(args.policy)
        bag = _sample(args.bag, 'bag')
        questions_file = _sample(args.questions, 'questions.jsonl') if args.questions else None
        questions, frames = _read(bag, questions_file, args)
    except (ValueError, OSError) as error:  # BagError is a ValueError
        _warn(str(error))
        return 2
    if not questions:
        _warn(f'no question to replay (bag {bag!r})')
        return 2
    from colvlm_bench.eval_cli import evaluate
    from colvlm_bench.evaluate import Evaluator
    from colvlm_models.vlm import ModelLoadError, TransformersVlm

    try:
        backend = TransformersVlm(args.model, device=args.device, progress=not args.no_progress)
    except ModelLoadError as error:
        _warn(str(error))
        return 2
    print(f'replaying {len(questions)} questions about {len(set(q.image for q in questions))} '
          f'frames of {frames.topic} ({frames.count} on the topic) from {bag}', flush=True)
    evaluator = Evaluator(backend, frames, questions, progress=not args.no_progress,
                          vicrop_method=args.vicrop_method)
    return evaluate(args, evaluator, policies, PROG)


def _read(bag: str, questions_file: str | None, args: argparse.Namespace):
    """(Glyph-VQA style questions keyed by frame, BagFrames); warnings go to stderr."""
    from colvlm_bench.replay import BagFrames, read_bag_queries, read_questions_file
    from colvlm_edge.sources.bag import BagSource
    from colvlm_msgs.bag import BagError, open_reader

    reader = open_reader(bag)  # every way a bag can be unreadable, in one line
    try:
        if questions_file is None:
            asked, problems = read_bag_queries(reader, bag, args.query_topic)
        else:
            if not Path(questions_file).is_file():
                raise OSError(f'questions file {questions_file!r} does not exist')
            asked, problems = read_questions_file(questions_file)
    finally:
        reader.close()
    for problem in problems:
        _warn(problem)
    if args.limit:
        asked = asked[:args.limit]
    with BagSource(bag, topic=args.topic) as source:  # ValueError: no such image topic
        try:
            frames = BagFrames(source, [q.frame for q in asked])
        except Exception as error:  # rosbags raises several kinds on damaged storage
            raise BagError(f'cannot read bag {bag!r} (truncated or corrupt?): '
                           f'{error}') from None
    return _resolve(asked, frames), frames


def _resolve(asked: list, frames) -> list:
    """Glyph-VQA style questions for the `asked` whose frame the bag has (warning about the
    rest); a target the bag's frames cannot be scored against is dropped, said once."""
    from colvlm_bench.glyphvqa.questions import Question
    from colvlm_bench.replay import describe

    questions, unscorable, sizes = [], 0, set()
    for item in asked:
        key = frames.key(item.frame)
        if key is None:
            why = (frames.matcher.reason(item.frame.image, frames.topic) if item.frame.image
                   else f'{frames.topic} has no {describe(item.frame)} ({frames.count} '
                        'messages)')
            _warn(f'{item.origin}: {why}; question skipped')
            continue
        target = item.target
        if target is not None:
            height, width = frames.original(key).shape[:2]
            drawn_on = frames.matcher.size(item.frame.image) if item.frame.image else None
            if (drawn_on not in (None, (width, height))
                    or target[2] > width or target[3] > height):
                unscorable += 1
                sizes.add(f'{width}x{height}')
                target = None
        questions.append(Question(item.id, key, item.question, item.answers, item.kind,
                                  target))
    images = {q.frame.image for q in asked if q.frame.image}
    if images:
        found = {q.frame.image for q in asked if q.frame.image and frames.key(q.frame)}
        print(f'{len(found)} of {len(images)} data set images found among the frames of '
              f'{frames.topic} (by content)', flush=True)
    if unscorable:
        _warn(f'RoI hit cannot be computed for {unscorable} questions: their frames in the bag '
              f'({", ".join(sorted(sizes))}) are not the originals their targets were drawn on '
              "(a bag of the edge's global frames holds resized copies, and crops cut from them "
              'are no sharper than they); roi_hit_rate leaves them out (null when none is left)')
    return questions
