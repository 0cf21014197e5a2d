"""linkbench: colvlm's edge and server over a shaped, lossy link between two network
namespaces; the tuned lossy-link configuration against a naive one, in the same run.

Reproduce (root; needs ip, tc and nft: apt-get install iproute2 nftables):

    sudo python -m tools.linkbench --out out/linkbench        # about 6 min on 2 cores
    sudo python -m tools.linkbench --quick --out out/lb-quick # tuned only, 10% loss, 4 queries

The edge's namespace sends through `tc tbf` at --rate-kbit (default 1000); both ends drop
--losses % of packets at ingress (nft numgen random). Per configuration, on its own link: an
edge (one fixed Glyph-VQA scene, a frame on request), a server (the bundled model) and an
asker beside the server, all configurations at once. Per loss setting, --queries fresh-frame
questions, asked of the configurations in turn, one query in flight at a time. Prints the
table, writes results.json and table.txt to --out, and each process's log under
--out/<config>/.
Exit status: 0 when every setting ran (targets are reported, not enforced), 1 on failure,
77 when this machine cannot build the link (not root, a tool missing).
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
import signal
import sys

from .bench import configurations, prepare_scene, run
from .deployment import Deployment
from .network import (
    LinkNetwork,
    NetworkUnavailable,
    missing_requirements,
    sweep_stale,
)
from .processes import ProcessFailed
from .report import comparisons, table

EXIT_UNAVAILABLE = 77


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.split(',') if part.strip()]


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='linkbench', description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='out/linkbench', help='results folder')
    parser.add_argument('--rate-kbit', type=int, default=1000, help='uplink rate, kbit/s')
    parser.add_argument('--queue-ms', type=float, default=1000.0,
                        help="the shaper's queue, ms of the link (a modem's buffer)")
    parser.add_argument('--losses', type=_floats, default=[0.0, 5.0, 10.0, 20.0],
                        help='packet loss settings, %% each way, comma-separated')
    parser.add_argument('--queries', type=int, default=20, help='questions per setting')
    parser.add_argument('--configs', default='tuned,naive',
                        help='comma-separated: tuned, naive, the other paths layers and '
                        'full-edge, and the ablations tuned-default-link, naive-lossy-link '
                        '(the other link settings)')
    parser.add_argument('--seed', type=int, default=20261124, help='the Glyph-VQA scene')
    parser.add_argument('--quick', action='store_true',
                        help='tuned only, 10%% loss, 4 questions (the test suite)')
    args = parser.parse_args(argv)
    if args.quick:
        args.configs, args.losses, args.queries = 'tuned', [10.0], 4
    args.configs = [name.strip() for name in args.configs.split(',') if name.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    reason = missing_requirements()
    if reason:
        print(f'linkbench: cannot build the link: {reason}', file=sys.stderr)
        return EXIT_UNAVAILABLE
    # Ctrl-C and SIGTERM unwind, so the processes stop and the namespaces go (SIGINT too,
    # for a shell that started linkbench in the background with SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scene = prepare_scene(out, args.seed)
    known = configurations(scene.size)
    unknown = [name for name in args.configs if name not in known]
    if unknown:
        print(f'linkbench: unknown configuration {unknown[0]!r} (known: {", ".join(known)})',
              file=sys.stderr)
        return 2
    header = (f'linkbench: {args.rate_kbit} kbit/s uplink (tc tbf, {args.queue_ms:g} ms queue), '
              f'loss each way (nft numgen), {args.queries} fresh-frame questions a setting, '
              f'bundled model, scene {scene.size[0]}x{scene.size[1]} px (seed {args.seed})')
    try:
        with contextlib.ExitStack() as stack:
            sweep_stale()
            deployments = []
            for index, name in enumerate(args.configs):
                print(f'{name}: {known[name].description}', flush=True)
                network = stack.enter_context(LinkNetwork(args.rate_kbit, args.queue_ms, index))
                deployment = Deployment(network, known[name], out)
                stack.callback(deployment.stop)  # before its namespaces go
                deployments.append(deployment)
            results = run(deployments, scene, args.losses, args.queries,
                          settle=not args.quick, progress=lambda line: print(line, flush=True))
    except NetworkUnavailable as error:
        print(f'linkbench: cannot build the link: {error}', file=sys.stderr)
        return EXIT_UNAVAILABLE
    except ProcessFailed as error:
        print(f'linkbench: {error}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('linkbench: interrupted; processes stopped, namespaces deleted', file=sys.stderr)
        return 130
    summary = comparisons(results)
    text = table(results, summary, header)
    print('\n' + text)
    (out / 'table.txt').write_text(text + '\n', encoding='utf-8')
    document = {'rate_kbit': args.rate_kbit, 'queue_ms': args.queue_ms, 'seed': args.seed,
                'configurations': {name: known[name].description for name in args.configs},
                'summary': summary, 'settings': results}
    (out / 'results.json').write_text(json.dumps(document, indent=1), encoding='utf-8')
    return 0


if __name__ == '__main__':
    sys.exit(main())
