"""`colvlm demo` end to end: its own edge and server processes over DDS, the bundled model.

What a lost edge does to the answers is the server node's business (test/unit/
test_server_node.py); how the demo counts degraded answers is tested in
test/unit/test_demo_summary.py.
"""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys

from processes import REPO_ROOT

DEMO_TIMEOUT_S = 300.0
POLICIES = ('entropy', 'global', 'always')


def _demo(out: Path, env: dict, scenes: int) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, '-m', 'colvlm_bench.cli', 'demo', '--out', str(out), '--scenes',
         str(scenes), '--eval-images', '0', '--domain-id',
         env['ROS_DOMAIN_ID']], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=DEMO_TIMEOUT_S)
    return done.returncode, done.stdout + done.stderr


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
    (tmp_path / 'eval').mkdir()  # an earlier run's evaluation, which this run skips
    (tmp_path / 'eval' / 'metrics.json').write_text('[]')
    code, output = _demo(tmp_path, dds_env, scenes=1)
    assert code == 0, output
    assert not (tmp_path / 'eval').exists()
    assert 'demo: the server exited 0, the edge exited 0' in output
    # Output into a pipe: no progress bar redraws among the answer lines.
    assert '\r' not in output and 'q/s' not in output and 'Traceback' not in output
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
    assert len(drawn) == len(crops)  # every crop asked for, right or wrong
    assert all(f'](images/{name})' in report for name in drawn)
