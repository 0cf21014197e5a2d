#!/usr/bin/env python3
"""Rerun every measurement the docs report, one after another, each with its log.

    bash tools/dev.sh bench                  # every step, into out/bench
    bash tools/dev.sh bench --only accel,views --out out/bench-quick
    bash tools/dev.sh bench --list           # the steps and their commands, nothing run

Timings are only comparable from a quiet machine, so the steps run one at a time, never
beside each other; each writes `<out>/<step>.log` and its result folders under `<out>`. A step
that fails is reported and the next one runs. Linkbench needs root and `ip`, `tc` and `nft`:
without them its step is skipped and says why. The page each step feeds is named in the list.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import os
from pathlib import Path
import shlex
import shutil
import subprocess
import sys
import time


@dataclass(frozen=True)
class Step:
    name: str
    page: str  # the docs page whose figures the step reruns
    # '{out}' stands for the output folder, '{python}' and '{colvlm}' for the environment's
    commands: tuple[tuple[str, ...], ...]
    needs_root: bool = False


def _colvlm(*args: str) -> tuple[str, ...]:
    return ('{colvlm}', *args)


def _tool(name: str, *args: str) -> tuple[str, ...]:
    return ('{python}', '-m', f'tools.{name}', *args)


def _split(name: str, seed: str, *style: str) -> tuple[tuple[str, ...], ...]:
    """A held-out split and its two runs, as docs/results.md makes them (the split is drawn
    again from its seed on a rerun, so an earlier run's copy is replaced)."""
    data = f'{{out}}/data/{name}'
    return (_colvlm('dataset', 'glyphvqa', data, '--n-images', '120', '--seed', seed, *style,
                    '--overwrite'),
            _colvlm('eval', data, '--policy', 'global,entropy,random', '--no-progress',
                    '--out', f'{{out}}/eval-{name}-a'),
            _colvlm('eval', data, '--policy', 'always,oracle', '--no-progress',
                    '--out', f'{{out}}/eval-{name}-b'))


def _layers(*args: str) -> tuple[str, ...]:
    return _colvlm('eval', '{out}/bench-layers/data', '--policy', 'layers', '--no-progress',
                   *args)


STEPS = (
    Step('heldout', 'docs/results.md (tables), README',
         _split('camera', '20261206', '--style', 'camera')
         # The same scenes with the pose factor on: squares and triangles turned.
         + _split('camera-pose', '20261206', '--style', 'camera', '--factors', 'all')
         + _split('heldout', '20261123')),
    Step('robustness', 'docs/results.md (camera factors), docs/robustness.png',
         (_tool('bench_robustness', '--out', '{out}/robustness', '--n-images', '8'),)),
    Step('server', 'docs/results.md (server overhead)',
         (_tool('bench_server', '--images', '10', '--repeat', '2'),)),
    Step('linkbench', 'docs/lossy-links.md, docs/token-layers.md (the four paths)',
         (_tool('linkbench', '--out', '{out}/linkbench'),
          _tool('linkbench', '--configs', 'naive,tuned,layers,full-edge', '--losses', '0,10',
                '--out', '{out}/linkbench-paths')), needs_root=True),
    Step('layers', 'docs/token-layers.md',
         (_tool('bench_layers', '--out', '{out}/bench-layers', '--images', '40'),
          _layers('--layers-proactive', '1', '--out', '{out}/layers-1'),
          _layers('--layers-proactive', '2', '--out', '{out}/layers-2'),
          _layers('--layers-proactive', '2', '--layers-crop', '--out', '{out}/layers-2-crop'))),
    Step('accel', 'docs/accelerations.md',
         (_tool('bench_accel', '--images', '6', '--rounds', '3', '--out', '{out}/bench-accel'),)),
    Step('views', 'docs/multi-camera.md',
         (_tool('bench_views', '--scenes', '60', '--out', '{out}/bench-views'),)),
)


def root_missing() -> str | None:
    """Why linkbench cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return 'needs root (network namespaces, tc, nft)'
    missing = [tool for tool in ('ip', 'tc', 'nft') if shutil.which(tool) is None]
    return f'needs {", ".join(missing)} (apt-get install iproute2 nftables)' if missing else None


def expand(command: tuple[str, ...], out: Path, python: str = 'python',
           colvlm: tuple[str, ...] = ('colvlm',)) -> list[str]:
    argv: list[str] = []
    for part in command:
        if part == '{colvlm}':
            argv += colvlm
        else:
            argv.append(part.format(out=out, python=python))
    return argv


def environment() -> tuple[str, tuple[str, ...]]:
    """This interpreter, and how to call colvlm with it: the command installed beside it (a
    venv), else its module (a colcon workspace puts the command elsewhere)."""
    script = Path(sys.executable).with_name('colvlm')
    if script.exists():
        return sys.executable, (str(script),)
    return sys.executable, (sys.executable, '-m', 'colvlm_bench.cli')


def pick(only: str | None) -> list[Step]:
    if not only:
        return list(STEPS)
    names = [name.strip() for name in only.split(',') if name.strip()]
    known = {step.name: step for step in STEPS}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f'--only: unknown step(s) {", ".join(unknown)}; '
                         f'the steps are {", ".join(known)}')
    return [known[name] for name in names]


def run_step(step: Step, out: Path, python: str,
             colvlm: tuple[str, ...]) -> tuple[str, float]:
    """('ok' | 'failed: ...' | 'skipped: ...', seconds); output goes to <out>/<step>.log."""
    if step.needs_root and (reason := root_missing()):
        return f'skipped: {reason}', 0.0
    start = time.monotonic()
    env = dict(os.environ, HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1')
    with open(out / f'{step.name}.log', 'w', encoding='utf-8') as log:
        for command in step.commands:
            argv = expand(command, out, python, colvlm)
            log.write(f'$ {shlex.join(argv)}\n')
            log.flush()
            code = subprocess.call(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
            if code != 0:
                return (f'failed: exit {code} from {shlex.join(expand(command, out))} (see '
                        f'{out / (step.name + ".log")})'), time.monotonic() - start
    return 'ok', time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m tools.bench_docs',
                                     description=__doc__.splitlines()[0])
    parser.add_argument('--out', type=Path, default=Path('out/bench'),
                        help='results folder (default: out/bench)')
    names = ', '.join(step.name for step in STEPS)
    parser.add_argument('--only', metavar='STEPS', help=f'comma list of steps, among {names}')
    parser.add_argument('--list', action='store_true',
                        help='print the steps and their commands; run nothing')
    args = parser.parse_args(argv)
    try:
        steps = pick(args.only)
    except ValueError as error:
        parser.error(str(error))
    if args.list:
        for step in steps:
            print(f'{step.name}: {step.page}' + (' [root]' if step.needs_root else ''))
            for command in step.commands:
                print('  ' + shlex.join(expand(command, args.out)))
        return 0
    python, colvlm = environment()
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for step in steps:
        print(f'bench: {step.name} ...', flush=True)
        outcome, seconds = run_step(step, args.out, python, colvlm)
        print(f'bench: {step.name} {outcome} ({seconds / 60:.1f} min)', flush=True)
        results.append(outcome)
    counts = {kind: sum(outcome.split(':')[0] == kind for outcome in results)
              for kind in ('ok', 'failed', 'skipped')}
    print(f'bench: {counts["ok"]} ok, {counts["failed"]} failed, {counts["skipped"]} skipped; '
          f'logs in {args.out}')
    return 1 if counts['failed'] else 0


if __name__ == '__main__':
    sys.exit(main())
