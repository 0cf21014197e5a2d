"""The README's manual flow, run as written: its `colvlm dataset`, `colvlm edge` on the folder
(played once, ended long before the question), `colvlm server` and `colvlm ask`, as real
processes over DDS with the bundled model, in a fresh folder. The ask exits 0 (status OK):
the server asks the edge for its last frame (colvlm/request_frame). A second ask aims at one
picture with --image, for an edge that reads the camera topic (the README's next lines)."""

from __future__ import annotations

from pathlib import Path
import re
import shlex
import subprocess
import sys

from processes import REPO_ROOT, START_TIMEOUT_S, ChildProcess

SECTION = '## Your own images: edge, server, ask'


def readme_commands() -> list[str]:
    """The shell lines of the README's manual flow, comments and `source` left out."""
    text = (REPO_ROOT / 'README.md').read_text(encoding='utf-8')
    block = re.search(re.escape(SECTION) + r'\s+```\n(.*?)```', text, re.S)
    assert block, f'README.md has no code block under {SECTION!r}'
    lines = [line.split('#')[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line and not line.startswith('source ')]


def _argv(line: str) -> list[str]:
    words = shlex.split(line.rstrip('&'))
    assert words[0] == 'colvlm', line
    return [sys.executable, '-m', 'colvlm_bench.cli', *words[1:]]


def test_the_readme_manual_flow_answers_ok(tmp_path, dds_env):
    env = {**dds_env, 'PYTHONPATH': str(REPO_ROOT)}
    commands = readme_commands()
    assert [c.split()[1] for c in commands] == ['dataset', 'edge', 'server', 'ask'], commands
    children: list[ChildProcess] = []
    try:
        for line in commands[:-1]:
            if line.endswith('&'):
                children.append(ChildProcess(_argv(line), env, cwd=tmp_path,
                                             name=line.split()[1]))
            else:
                subprocess.run(_argv(line), env=env, cwd=tmp_path, check=True, timeout=120)
        for child in children:
            child.wait_for(r'\bready:', START_TIMEOUT_S)
        children[0].wait_for('source ended', 30.0)  # the folder has played once
        asked = subprocess.run(_argv(commands[-1]), env=env, cwd=tmp_path,
                               capture_output=True, text=True, timeout=120)
        assert asked.returncode == 0, asked.stdout + asked.stderr
        assert 'status: OK' in asked.stdout
        server = children[1]
        server.wait_for(r'query \w+: .* \(OK, ', 10.0)
        children[0].stop()  # one edge per camera: the next one reads the topic
        _ask_about_one_picture(tmp_path, env)
    finally:
        for child in children:
            child.stop()


def _ask_about_one_picture(folder: Path, env: dict) -> None:
    """`colvlm ask --image FILE` shows the picture to an edge reading the camera topic."""
    edge = ChildProcess(_argv('colvlm edge --source topic:camera/image_raw/compressed '
                              '--namespace cam0'), env, cwd=folder, name='topic-edge')
    try:
        edge.wait_for(r'\bready:', START_TIMEOUT_S)
        picture = sorted((folder / 'out' / 'mydata' / 'images').iterdir())[-1]
        asked = subprocess.run(_argv(f'colvlm ask "Is there a blue circle?" --image {picture} '
                                     '--namespace cam0 --json'), env=env, cwd=folder,
                               capture_output=True, text=True, timeout=120)
        assert asked.returncode in (0, 1), asked.stderr
        assert '"status_name": "OK"' in asked.stdout, asked.stdout + asked.stderr
    finally:
        edge.stop()
