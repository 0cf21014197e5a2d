"""The processes linkbench starts inside the namespaces: each logs to a file, is waited on by
a log line, and is stopped with SIGINT (a clean shutdown), then killed if it lingers.

Children run in their own session, so a Ctrl-C at the terminal reaches only linkbench, which
stops them in order before it deletes the namespaces.
"""

from __future__ import annotations

import json
from pathlib import Path
import queue
import re
import signal
import subprocess
import threading
import time

STOP_TIMEOUT_S = 15.0


class ProcessFailed(RuntimeError):
    """A child exited or stayed silent; the message ends with the tail of its log."""


class LoggedProcess:
    """A child whose stdout and stderr go to `log_path`."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path,
                 cwd: Path, pipe_stdio: bool = False):
        self.name, self.log_path = name, log_path
        self._log = open(log_path, 'w', encoding='utf-8')  # closed in stop()
        pipes = {'stdin': subprocess.PIPE, 'stdout': subprocess.PIPE} if pipe_stdio else {
            'stdin': subprocess.DEVNULL, 'stdout': self._log}
        self.process = subprocess.Popen(argv, env=env, cwd=cwd, stderr=self._log, text=True,
                                        bufsize=1, start_new_session=True, **pipes)

    def tail(self, lines: int = 25) -> str:
        text = self.log_path.read_text(encoding='utf-8', errors='replace').splitlines()
        return '\n'.join(text[-lines:])

    def fail(self, what: str) -> ProcessFailed:
        return ProcessFailed(f'{self.name}: {what}; its log ({self.log_path}) ends:\n'
                             f'{self.tail()}')

    def wait_for(self, pattern: str, timeout_s: float) -> None:
        """Until a log line matches `pattern`; ProcessFailed when it exits or time is up."""
        deadline = time.monotonic() + timeout_s
        compiled = re.compile(pattern)
        while True:
            text = self.log_path.read_text(encoding='utf-8', errors='replace')
            if any(compiled.search(line) for line in text.splitlines()):
                return
            if self.process.poll() is not None:
                raise self.fail(f'exited with {self.process.returncode} before {pattern!r}')
            if time.monotonic() > deadline:
                raise self.fail(f'no {pattern!r} within {timeout_s:g} s')
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)
        self._log.close()


class DriverProcess(LoggedProcess):
    """tools.linkbench.driver: one JSON command a line in, one JSON reply a line out."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path, cwd: Path):
        super().__init__('driver', argv, env, log_path, cwd, pipe_stdio=True)
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)  # end of output

    def reply(self, timeout_s: float) -> dict:
        try:
            line = self._lines.get(timeout=timeout_s)
        except queue.Empty:
            raise self.fail(f'no reply within {timeout_s:g} s') from None
        if line is None:
            raise self.fail(f'exited with {self.process.poll()}')
        return json.loads(line)

    def request(self, command: dict, timeout_s: float) -> dict:
        try:
            self.process.stdin.write(json.dumps(command) + '\n')
            self.process.stdin.flush()
        except BrokenPipeError:
            raise self.fail('exited') from None
        return self.reply(timeout_s)

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.close()  # the driver ends at the end of its input
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                pass
        super().stop()
