"""`colvlm demo` end to end: its own edge and server processes over DDS, the bundled model.

The second test kills the demo's edge process after the first answer: the remaining
questions must still get one answer each, with a status, and the run must say how many
were degraded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import signal
import threading
import time

from conftest import spawn

DEMO_TIMEOUT_S = 300.0
POLICIES = ('entropy', 'global', 'always')


def _demo(out: Path, env: dict, scenes: int):
    return spawn(['-m', 'colvlm_bench.cli', 'demo', '--out', str(out), '--scenes',
                  str(scenes), '--eval-images', '0', '--no-progress', '--domain-id',
                  env['ROS_DOMAIN_ID']], env)


def _finish(process) -> tuple[int, str]:
    try:
        stdout, stderr = process.communicate(timeout=DEMO_TIMEOUT_S)
    except Exception:
        process.kill()
        raise
    return process.returncode, stdout + stderr


def _questions(out: Path) -> list[dict]:
    lines = (out / 'scenes' / 'questions.jsonl').read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _answers_by_policy(out: Path) -> dict[str, list[dict]]:
    live = json.loads((out / 'live.json').read_text())
    by_policy: dict[str, list[dict]] = {policy: [] for policy in POLICIES}
    for row in live['answers']:
        by_policy[row['policy']].append(row)
    return by_policy


def test_the_demo_answers_every_question_under_each_policy(tmp_path, dds_env):
    code, output = _finish(_demo(tmp_path, dds_env, scenes=1))
    assert code == 0, output
    questions = _questions(tmp_path)
    by_policy = _answers_by_policy(tmp_path)
    for policy in POLICIES:
        rows = by_policy[policy]
        # One answer per question and policy, in order, each OK and with its costs.
        assert [r['question']['id'] for r in rows] == [q['id'] for q in questions], policy
        assert all(r['reply']['status_name'] == 'OK' for r in rows), policy
        assert all(r['reply']['uplink_bytes'] > 0 for r in rows), policy
    # The baselines behave as named: global never refines, always always does.
    assert {r['reply']['decision_name'] for r in by_policy['global']} == {'GLOBAL'}
    assert {r['reply']['decision_name'] for r in by_policy['always']} == {'LOCAL_CROP'}
    for g, a in zip(by_policy['global'], by_policy['always'], strict=True):
        assert a['reply']['uplink_bytes'] > g['reply']['uplink_bytes']
    # One printed line per entropy answer, then the summary against the baselines.
    assert output.count('min-entropy') == len(questions), output
    assert 'entropy vs always' in output
    report = (tmp_path / 'report.md').read_text()
    assert '## Against the baselines' in report
    crops = [r for r in by_policy['entropy'] if r['reply']['decision_name'] == 'LOCAL_CROP']
    drawn = sorted(p.name for p in (tmp_path / 'images').glob('*.jpg'))
    assert len(drawn) == min(4, len(crops))
    assert all(f'](images/{name})' in report for name in drawn)


def _edge_child(parent_pid: int) -> int | None:
    """The pid of the demo's `colvlm edge` child, read from /proc."""
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / 'stat').read_text()
            cmdline = (entry / 'cmdline').read_bytes().split(b'\0')
        except OSError:
            continue
        ppid = int(stat.rsplit(')', 1)[1].split()[1])
        if ppid == parent_pid and b'edge' in cmdline:
            return int(entry.name)
    return None


def test_an_edge_killed_mid_demo_leaves_every_question_an_answer_with_a_status(tmp_path,
                                                                               dds_env):
    process = _demo(tmp_path, dds_env, scenes=2)
    lines: list[str] = []
    first_answer = threading.Event()

    def read() -> None:
        for line in process.stdout:
            lines.append(line)
            if 'min-entropy' in line:
                first_answer.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert first_answer.wait(DEMO_TIMEOUT_S), ''.join(lines) + process.stderr.read()
    edge_pid = _edge_child(process.pid)
    assert edge_pid is not None, 'the demo has no edge child'
    os.kill(edge_pid, signal.SIGKILL)
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    if process.poll() is None:
        process.kill()
    reader.join(timeout=10)
    output = ''.join(lines)
    assert process.returncode == 1, output + process.stderr.read()

    questions = _questions(tmp_path)
    entropy = _answers_by_policy(tmp_path)['entropy']
    assert [r['question']['id'] for r in entropy] == [q['id'] for q in questions]
    statuses = [r['reply']['status_name'] for r in entropy]
    assert all(statuses), statuses
    # The second scene never reached the server: no edge turned it into a global frame.
    second = sorted({q['image'] for q in questions})[1]
    assert {r['reply']['status_name'] for r in entropy
            if r['question']['image'] == second} == {'NO_FRAME'}
    degraded = sum(s != 'OK' or r['reply']['decision_name'] == 'FALLBACK'
                   for s, r in zip(statuses, entropy, strict=True))
    assert f'{degraded} of {len(questions)} entropy answers were degraded' in output
    assert (tmp_path / 'report.md').is_file()

