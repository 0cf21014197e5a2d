"""What `colvlm demo` makes of its answers: the summary per policy, the printed lines, the
annotated scenes and report.md. Accuracy is a percentage everywhere (tables, lines, plots).

Questions are shown as people read them ("an orange square"); the data set keeps the
template's "a", the words the bundled model was trained on (`display_question`).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
import re

DEMO_POLICY = 'entropy'
_ARTICLE = re.compile(r'\b([Aa]) (?=[aeiouAEIOU])')


def display_question(text: str) -> str:
    """'Is there a orange square?' -> 'Is there an orange square?', for display only."""
    return _ARTICLE.sub(lambda match: f'{match.group(1)}n ', text)


def degraded(reply: dict) -> bool:
    """An answer that lost something: any status but OK, or a refinement that fell back."""
    return reply['status_name'] != 'OK' or reply['decision_name'] == 'FALLBACK'


def answer_line(question, reply: dict) -> str:
    from colvlm_bench.glyphvqa.questions import is_correct

    mark = 'right' if is_correct(reply['answer'], question.answers) else 'wrong'
    return (f'{display_question(question.question)!r} -> {reply["answer"]!r} ({mark}, '
            f'expected {question.answers[0]!r}); min-entropy '
            f'{reply["first_pass"]["min_entropy"]:.3f}; {reply["decision_name"].lower()}; '
            f'{reply["status_name"]}; uplink {reply["uplink_bytes"]} B; '
            f'{reply["total_ms"]:.0f} ms')


def summarize_live(answers: list[tuple]) -> dict:
    """Per policy: answered, accuracy (%), mean uplink bytes and latency, crops, degraded."""
    from colvlm_bench.glyphvqa.questions import is_correct

    rows: dict[str, list] = defaultdict(list)
    for question, policy, reply in answers:
        rows[policy].append((question, reply))
    summary = {}
    for policy, pairs in rows.items():
        n = len(pairs)
        ok = [reply for _, reply in pairs if reply['status_name'] == 'OK']
        summary[policy] = {
            'n': n, 'ok': len(ok),
            'degraded': sum(degraded(reply) for _, reply in pairs),
            'accuracy_percent': 100 * sum(is_correct(r['answer'], q.answers)
                                          for q, r in pairs) / n,
            'uplink_bytes_mean': sum(r['uplink_bytes'] for _, r in pairs) / n,
            'retransmission_rate': sum(r['decision_name'] in ('LOCAL_CROP', 'FALLBACK')
                                       for _, r in pairs) / n,
            'latency_ms_mean': sum(r['total_ms'] for _, r in pairs) / n,
        }
    return summary


def print_summary(summary: dict) -> None:
    print(f'\n{"policy":<9} {"answered":>9} {"accuracy":>9} {"uplink B":>9} {"crops":>6} '
          f'{"ms":>6} {"degraded":>9}')
    for policy, s in summary.items():
        print(f'{policy:<9} {s["ok"]:>4}/{s["n"]:<4} {s["accuracy_percent"]:>8.1f}% '
              f'{s["uplink_bytes_mean"]:>9.0f} {100 * s["retransmission_rate"]:>5.0f}% '
              f'{s["latency_ms_mean"]:>6.0f} {s["degraded"]:>9}')
    ours, always = summary.get(DEMO_POLICY), summary.get('always')
    if ours and always and always['uplink_bytes_mean']:
        gain = ours['accuracy_percent'] - always['accuracy_percent']
        ratio = ours['uplink_bytes_mean'] / always['uplink_bytes_mean']
        print(f'{DEMO_POLICY} vs always: accuracy {gain:+.1f} pt at {ratio:.2f}x the uplink bytes')
    if ours and ours['degraded']:
        print(f'{ours["degraded"]} of {ours["n"]} {DEMO_POLICY} answers were degraded '
              '(see live.json for their statuses)')


def exit_codes_line(codes: dict[str, int]) -> str:
    """'demo: the server exited 0, the edge exited 0' (a negative code: killed by a signal)."""
    parts = [f'the {name} ' + (f'was stopped by signal {-code}' if code < 0
                               else f'exited {code}') for name, code in codes.items()]
    return 'demo: ' + ', '.join(parts)


def _box(image, box: tuple[int, int, int, int], color: tuple[int, int, int]) -> None:
    """A box that shows on any background: a black outline around a white one around the
    colour, so a blue box stays visible on a blue sign."""
    import cv2

    x0, y0, x1, y1 = box
    for shade, thickness in (((0, 0, 0), 7), ((255, 255, 255), 5), (color, 2)):
        cv2.rectangle(image, (x0, y0), (x1, y1), shade, thickness)


def draw_rois(folder: Path, scene_dir: Path, answers: list[tuple]) -> list[tuple]:
    """Every demo-policy answer that asked for a crop, right or wrong, drawn on its scene:
    the RoI sent to the edge (green) and the evidence box (blue). (question, reply, file)."""
    import cv2

    from colvlm_bench.glyphvqa.questions import is_correct

    folder.mkdir(exist_ok=True)
    drawn = []
    for question, policy, reply in answers:
        roi = reply.get('roi') or {}
        if policy != DEMO_POLICY or not roi.get('width'):
            continue
        image = cv2.imread(str(scene_dir / question.image), cv2.IMREAD_COLOR)
        x, y = roi['x_offset'], roi['y_offset']
        _box(image, (x, y, x + roi['width'], y + roi['height']), (0, 200, 0))
        if question.target:
            _box(image, tuple(question.target), (255, 80, 0))
        mark = 'right' if is_correct(reply['answer'], question.answers) else 'wrong'
        caption = f'{display_question(question.question)} -> {reply["answer"]} ({mark})'
        cv2.putText(image, caption, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 4)
        cv2.putText(image, caption, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8,
                    (255, 255, 255), 2)
        name = f'{question.id}.jpg'
        cv2.imwrite(str(folder / name), image, [cv2.IMWRITE_JPEG_QUALITY, 85])
        drawn.append((question, reply, name))
    return drawn


def write_report(out: Path, summary: dict, answers, evaluation, drawn: list[tuple]) -> None:
    lines = ['# colvlm demo', '',
             'Edge and server as separate processes over DDS; the demo played the camera.', '',
             f'## Answers ({DEMO_POLICY} policy)', '',
             '| scene | question | answer | expected | status | decision | min-entropy (nats) '
             '| uplink B | total ms |', '|---|---|---|---|---|---|---|---|---|']
    for question, policy, reply in answers:
        if policy == DEMO_POLICY:
            lines.append(
                f'| {Path(question.image).name} | {display_question(question.question)} | '
                f'{reply["answer"]} | {question.answers[0]} | {reply["status_name"]} | '
                f'{reply["decision_name"].lower()} | '
                f'{reply["first_pass"]["min_entropy"]:.3f} | {reply["uplink_bytes"]} | '
                f'{reply["total_ms"]:.0f} |')
    lines += ['', '## Against the baselines (same questions, same frames, over DDS)', '',
              '| policy | answered OK | accuracy % | uplink B | crop rate % | total ms | '
              'degraded |', '|---|---|---|---|---|---|---|']
    for policy, s in summary.items():
        lines.append(f'| {policy} | {s["ok"]}/{s["n"]} | {s["accuracy_percent"]:.1f} | '
                     f'{s["uplink_bytes_mean"]:.0f} | {100 * s["retransmission_rate"]:.0f} | '
                     f'{s["latency_ms_mean"]:.0f} | {s["degraded"]} |')
    lines += _drawn_lines(drawn) + _evaluation_lines(evaluation)
    (out / 'report.md').write_text('\n'.join(lines) + '\n')


def _drawn_lines(drawn: list[tuple]) -> list[str]:
    if not drawn:
        return []
    lines = ['', f'## Every crop the {DEMO_POLICY} policy asked for (green: the ViCrop box '
                 'sent to the edge; blue: the evidence)', '']
    for question, reply, name in drawn:
        lines += [f'{Path(question.image).name}: {display_question(question.question)} -> '
                  f'{reply["answer"]} (expected {question.answers[0]})', '',
                  f'![{name}](images/{name})', '']
    return lines


def _evaluation_lines(evaluation: list[dict] | None) -> list[str]:
    if not evaluation:
        return []
    lines = ['', '## In-process evaluation, every policy (`eval/metrics.json`)', '',
             '| policy | accuracy % | uplink B | retransmission % | LLM tokens |',
             '|---|---|---|---|---|']
    for m in evaluation:
        lines.append(f'| {m["policy"]} | {100 * m["accuracy"]:.1f} | '
                     f'{m["uplink_bytes_mean"]:.0f} | {100 * m["retransmission_rate"]:.0f} | '
                     f'{m["llm_tokens_mean"]:.0f} |')
    return lines + ['', '![accuracy vs uplink](eval/accuracy_vs_uplink.png)',
                    '![accuracy vs compute](eval/accuracy_vs_compute.png)']
