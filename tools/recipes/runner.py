"""Run a recipe, a list of `Stage`s, in order and resumably, and record it in the model.

Each stage is one run of a tool's `main(argv)` (`python -m <tool> <args>` in this process, so
torch and transformers load once). Its arguments are written with two placeholders, `{out}`
(the exported model) and `{work}` (the recipe's scratch folder), which are filled in at run
time and kept as they are in the record, so `training.json` carries no machine's paths.
A finished stage leaves `{work}/<stage>/done.json` (its arguments, seconds, versions); a rerun
skips every stage whose marker and outputs exist, so a stopped recipe carries on where it
stopped. The runner knows nothing of what the tools do.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
import importlib
import json
import os
from pathlib import Path
import platform
import time

MARKER = 'done.json'


@dataclass(frozen=True)
class Stage:
    """One tool run: `python -m {tool} {args}`; `outputs` are the paths it must leave."""

    name: str
    tool: str
    # flag (no dashes, _ for -) -> value; '_' -> the positional arguments
    args: dict = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    note: str = ''

    def argv(self, places: dict[str, str]) -> list[str]:
        """The command line with the placeholders filled: {'a_b': 1} -> ['--a-b', '1']; True is
        a bare flag, False and None are left out."""
        argv = [_fill(str(v), places) for v in self.args.get('_', ())]
        for key, value in self.args.items():
            if key == '_' or value is None or value is False:
                continue
            argv.append('--' + key.replace('_', '-'))
            if value is not True:
                argv.append(_fill(str(value), places))
        return argv

    def command(self) -> str:
        """The stage as a shell command, placeholders kept: what --dry-run prints."""
        return ' '.join(['python -m', self.tool, *self.argv({})])


def _fill(text: str, places: dict[str, str]) -> str:
    for key, value in places.items():
        text = text.replace('{' + key + '}', value)
    return text


def with_args(stage: Stage, **changes) -> Stage:
    """The stage with some arguments changed (None removes one)."""
    args = {**stage.args, **changes}
    return replace(stage, args={k: v for k, v in args.items() if v is not None})


def versions() -> dict[str, str]:
    """The versions a rerun should match."""
    found = {'python': platform.python_version()}
    for name in ('torch', 'transformers', 'numpy', 'cv2'):
        try:
            found[name] = importlib.import_module(name).__version__
        except ImportError:
            continue
    return found


class RecipeRunner:
    """Runs `stages` with {out} and {work} filled in; `run()` returns the stages' records."""

    def __init__(self, stages: list[Stage], out: Path, work: Path, log=print) -> None:
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f'stage names must be unique, got {names}')
        self.stages, self.out, self.work, self.log = stages, Path(out), Path(work), log
        self.places = {'out': str(self.out), 'work': str(self.work)}

    def marker(self, stage: Stage) -> Path:
        return self.work / stage.name / MARKER

    def is_done(self, stage: Stage) -> bool:
        return self.marker(stage).is_file() and all(
            Path(_fill(o, self.places)).exists() for o in stage.outputs)

    def run(self) -> list[dict]:
        records = []
        for index, stage in enumerate(self.stages, 1):
            if self.is_done(stage):
                self.log(f'[{index}/{len(self.stages)}] {stage.name}: done, skipped')
            else:
                self.log(f'[{index}/{len(self.stages)}] {stage.name}: {stage.command()}')
                self._run(stage)
            records.append(json.loads(self.marker(stage).read_text()))
        return records

    def _run(self, stage: Stage) -> None:
        (self.work / stage.name).mkdir(parents=True, exist_ok=True)
        main = getattr(importlib.import_module(stage.tool), 'main', None)
        if main is None:  # a package, run by its __main__ as `python -m` would
            main = importlib.import_module(stage.tool + '.__main__').main
        started = time.monotonic()
        status = main(stage.argv(self.places))
        seconds = time.monotonic() - started
        if status not in (0, None):
            raise SystemExit(f'recipe stage {stage.name} failed (exit status {status}): '
                             f'{stage.command()}')
        missing = [o for o in stage.outputs if not Path(_fill(o, self.places)).exists()]
        if missing:
            raise SystemExit(f'recipe stage {stage.name} left no {missing[0]}')
        record = {'name': stage.name, 'command': stage.command(), 'seconds': round(seconds, 1),
                  'versions': versions()}
        if stage.note:
            record['note'] = stage.note
        marker = self.marker(stage)
        marker.with_suffix('.tmp').write_text(json.dumps(record, indent=2) + '\n')
        os.replace(marker.with_suffix('.tmp'), marker)
