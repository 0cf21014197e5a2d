"""A user's mistakes that need a process of their own end in one line naming the culprit and
exit status 2, never a traceback (issue 20): a flat parameter file for the server, eval on a
truncated image, `colvlm ask` with no server, and a closed pipe (exit quietly). The cases
that load nothing run in-process: test/unit/test_user_mistakes.py."""

from __future__ import annotations

import os
import subprocess
import sys

from processes import REPO_ROOT

from colvlm_bench import cli


def _run(*args: str, env: dict | None = None, timeout: float = 120.0,
         **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'colvlm_bench.cli', *args], cwd=REPO_ROOT,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def test_a_flat_config_stops_the_server_before_the_model_loads(tmp_path):
    (tmp_path / 'flat.yaml').write_text('gate.threshold: 0.01\n')
    done = _run('server', '--config', str(tmp_path / 'flat.yaml'), '--transport', 'dds')
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and 'flat.yaml' in lines[0] and 'Traceback' not in done.stderr


def test_eval_on_a_truncated_image_is_one_line(tmp_path):
    from colvlm_bench.glyphvqa.dataset import load_dataset, write_dataset

    data = write_dataset(tmp_path / 'data', n_images=1, seed=0)
    image = data / load_dataset(data)[0].image
    image.write_bytes(image.read_bytes()[:2000])
    done = _run('eval', str(data), '--policy', 'global', '--out', str(tmp_path / 'out'),
                '--no-progress', timeout=300.0)
    assert done.returncode == 2, done.stderr
    assert 'Traceback' not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f'colvlm eval: cannot read image {image}: cannot decode image'), last


def test_ask_without_a_server_says_what_it_waits_for(dds_env):
    done = _run('ask', 'Is there a red circle?', '--namespace', 'nobody', '--timeout', '1.5',
                env=dds_env)
    assert done.returncode == 2 and 'Traceback' not in done.stderr
    waiting, gave_up = done.stderr.strip().splitlines()
    assert 'waiting up to 1.5 s for a server on /nobody/colvlm/ask' in waiting
    assert 'no answer from /nobody/colvlm/ask within 1.5 s' in gave_up


def test_ask_into_a_closed_pipe_exits_quietly(dds_env):
    from colvlm_msgs.transport import create_node

    server = create_node('fake_server', 'piped', backend='dds')
    ask = server.service_type('colvlm/srv/Ask')

    def answer(request):
        response = ask.Response()
        response.answer.query_id, response.answer.answer = request.query.query_id, 'yes'
        return response

    server.create_service('colvlm/srv/Ask', 'colvlm/ask', answer)
    try:
        child = subprocess.Popen(
            [sys.executable, '-m', 'colvlm_bench.cli', 'ask', 'Is there a red circle?',
             '--namespace', 'piped', '--json', '--timeout', '60'], cwd=REPO_ROOT, env=dds_env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        child.stdout.close()  # `| head -0`: the reader is gone before the answer comes
        stderr = child.stderr.read()
        assert child.wait(timeout=120) == cli.EXIT_BROKEN_PIPE, stderr
        assert stderr == ''
    finally:
        server.shutdown()
