"""`colvlm` verbs as child processes for the integration tests, from the repository root,
watched through their stderr (colvlm_bench.processes, which the demo uses too)."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
import sys

from colvlm_bench.processes import ChildFailed, ChildProcess

__all__ = ['ChildFailed', 'ChildProcess', 'START_TIMEOUT_S', 'ask_in_process', 'colvlm',
           'running']

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 120.0  # importing torch and loading a model on a busy machine is slow


def colvlm(*args: str, env: dict[str, str], name: str = '') -> ChildProcess:
    """`colvlm ARGS...` started with `env`."""
    return ChildProcess([sys.executable, '-m', 'colvlm_bench.cli', *args], env, cwd=REPO_ROOT,
                        name=name or args[0])


@contextlib.contextmanager
def running(*args: str, env: dict[str, str], ready: str = r'\bready:',
            timeout: float = START_TIMEOUT_S, name: str = ''):
    """`colvlm ARGS...` once a stderr line matches `ready`; killed on leaving if still up."""
    child = colvlm(*args, env=env, name=name)
    try:
        child.wait_for(ready, timeout)
        yield child
    finally:
        child.kill()


def ask_in_process(capsys, *args: str) -> tuple[int, str, str]:
    """`colvlm ask ARGS...` run in the test's own process (its environment, e.g. the dds_env
    fixture's): (exit code, stdout, stderr)."""
    from colvlm_bench import ask_cli

    parser = argparse.ArgumentParser()
    ask_cli.add_arguments(parser)
    code = ask_cli.run(parser.parse_args(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err
