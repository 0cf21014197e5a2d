"""A child process watched through its stderr: the one helper the demo and the tests use to
start `colvlm edge` / `colvlm server` and friends.

A thread drains stderr line by line (a full pipe would block the child), keeps the lines and
optionally writes them to a log file; `wait_for` blocks until a line matches, the child exits
or time runs out; `stop` ends it with a signal both nodes shut down cleanly on, then kills it
if it lingers. It knows nothing about what the child is.
"""

from __future__ import annotations

from pathlib import Path
import re
import signal
import subprocess
import threading
import time


class ChildFailed(AssertionError):
    """A child exited or stayed silent; the message ends with the tail of its stderr.

    An AssertionError so that a test waiting on a child fails (not errors) on it."""


class ChildProcess:
    """`argv` started with stderr pumped into `lines` (and `log`, when given)."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None, *,
                 cwd: str | Path | None = None, log: Path | None = None, name: str = '',
                 stdin: bool = False, stdout: bool = False):
        self.name = name or Path(argv[0]).name
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._log = log.open('w', encoding='utf-8') if log is not None else None
        self.process = subprocess.Popen(
            argv, env=env, cwd=cwd, text=True, bufsize=1, stderr=subprocess.PIPE,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout else subprocess.DEVNULL)
        self._pump = threading.Thread(target=self._read, name=f'{self.name}-stderr',
                                      daemon=True)
        self._pump.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            if self._log is not None:
                self._log.write(line)
                self._log.flush()
            with self._changed:
                self.lines.append(line.rstrip('\n'))
                self._changed.notify_all()
        with self._changed:  # end of stream: wake waiters to see the exit
            self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float, start: int = 0) -> re.Match:
        """The first match of `pattern` in a stderr line (from line `start` on); ChildFailed
        when the child exits first or `timeout` seconds pass."""
        compiled = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = start
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    match = compiled.search(line)
                    if match:
                        return match
                seen = max(seen, len(self.lines))
                if self.process.poll() is not None and not self._pump.is_alive():
                    raise self.failed(f'exited with {self.process.returncode} before '
                                      f'{pattern!r}')
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self.failed(f'no {pattern!r} within {timeout:g} s')
                self._changed.wait(min(remaining, 0.5))

    def failed(self, what: str) -> ChildFailed:
        return ChildFailed(f'{self.name}: {what}; its stderr ends:\n{self.tail()}')

    def tail(self, count: int = 40) -> str:
        with self._changed:
            return '\n'.join(self.lines[-count:])

    def text(self) -> str:
        """All of stderr so far (all of it once the child has exited and `stop` returned)."""
        with self._changed:
            return '\n'.join(self.lines)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send `signum`, wait up to `timeout` s, kill if it lingers; the exit code, once
        every stderr line has been read."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        self._pump.join(timeout=timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.process.returncode

    def kill(self) -> int:
        """SIGKILL: no goodbye (a lost edge); the exit code."""
        return self.stop(signal.SIGKILL)
