"""The `colvlm` command: one verb a module.

Each verb module provides `add_arguments(parser)`, `run(args) -> int` and a docstring whose
first line is the verb's help. Verb modules import heavy dependencies (torch, DDS) inside
`run`, so that `colvlm --help` and light verbs stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

VERBS = {
    'edge': 'colvlm_edge.cli',
    'server': 'colvlm_server.cli',
    'ask': 'colvlm_bench.ask_cli',
    'dataset': 'colvlm_bench.glyphvqa.cli',
    'eval': 'colvlm_bench.eval_cli',
    'record': 'colvlm_bench.record_cli',
    'replay': 'colvlm_bench.replay_cli',
    'demo': 'colvlm_bench.demo_cli',
    'check-model': 'colvlm_bench.check_model',
}

ALLOW_DOWNLOAD_FLAG = '--allow-download'
ALLOW_DOWNLOAD_ENV = 'COLVLM_ALLOW_DOWNLOAD'  # as colvlm_models.vlm reads it
# The verbs that load a model take --allow-download (main() reads it before any import).
MODEL_VERBS = ('edge', 'server', 'eval', 'replay', 'demo', 'check-model')
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a Unix tool whose reader left exits with


def _help_line(module_name: str) -> str:
    module = importlib.import_module(module_name)
    return (module.__doc__ or '').strip().splitlines()[0] if module.__doc__ else ''


def build_parser(verbs: dict[str, str] = VERBS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='colvlm', description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='verb', metavar='VERB', required=True)
    for verb, module_name in verbs.items():
        module = importlib.import_module(module_name)
        verb_parser = sub.add_parser(verb, help=_help_line(module_name),
                                     description=module.__doc__)
        module.add_arguments(verb_parser)
        if verb in MODEL_VERBS:
            verb_parser.add_argument(ALLOW_DOWNLOAD_FLAG, action='store_true',
                                     help='let a hub model id be downloaded (default: the '
                                          f'local hub cache only; {ALLOW_DOWNLOAD_ENV}=1 '
                                          'does the same)')
        verb_parser.set_defaults(_run=module.run)
    return parser


def offline_unless_allowed(argv: list[str]) -> None:
    """No hub look-ups unless the user opted in (--allow-download, COLVLM_ALLOW_DOWNLOAD=1):
    set before transformers is imported, which reads HF_HUB_OFFLINE once."""
    if ALLOW_DOWNLOAD_FLAG in argv:
        os.environ[ALLOW_DOWNLOAD_ENV] = '1'
    if os.environ.get(ALLOW_DOWNLOAD_ENV) != '1':
        os.environ.setdefault('HF_HUB_OFFLINE', '1')


def main(argv: list[str] | None = None) -> int:
    offline_unless_allowed(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `colvlm ask --json | head`: the reader is gone; leave quietly, as cat does. Python
        # would flush stdout again at exit and complain, so stdout points nowhere from here.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == '__main__':
    sys.exit(main())
