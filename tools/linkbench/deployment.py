"""One configuration deployed on its own link: the edge in the link's edge namespace, the
server and the asker (tools.linkbench.driver) in its server namespace.

The edge reads one Glyph-VQA scene in a loop and publishes a frame only when the server asks
(publish.mode on_request), so a query's uplink is its own frame and crops, nothing else.
"""

from __future__ import annotations

import os
from pathlib import Path
import sys
import time

from .network import EDGE_ADDRESS, SERVER_ADDRESS, LinkNetwork
from .processes import DriverProcess, LoggedProcess, ProcessFailed

REPO = Path(__file__).resolve().parents[2]
DRIVER = 'tools.linkbench.driver'  # run as a module from the repository root
NAMESPACE = 'cam0'
DOMAIN_ID = '77'               # each link is private: any id will do
START_TIMEOUT_S = 240.0        # importing torch on a loaded 2-core machine is slow
READY_TIMEOUT_S = 120.0        # discovery across the link, first frame, first answer
WARM_UP_QUERIES = 2            # answered but not counted: first-inference costs
EDGE_ARGS = ('-p', 'source.loop=true', '-p', 'source.fps=10', '-p', 'publish.mode=on_request',
             '-p', 'status.period_s=5.0')
SERVER_ARGS = ('-p', 'status.period_s=5.0')


def _environment(config, peer: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ('CYCLONEDDS_URI', 'COLVLM_QOS_FILE', 'ROS_LOCALHOST_ONLY')}
    env.update({'ROS_DOMAIN_ID': DOMAIN_ID, 'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SUBNET',
                'ROS_STATIC_PEERS': peer, 'COLVLM_TRANSPORT': 'dds', 'HF_HUB_OFFLINE': '1',
                'TRANSFORMERS_OFFLINE': '1', 'PYTHONUNBUFFERED': '1',
                # One inference thread: on a shared, loaded CPU a second OpenMP thread mostly
                # waits at barriers for the first, and it is the same for every configuration.
                'OMP_NUM_THREADS': '1'})
    env.update(config.environment)
    return env


class Deployment:
    """Edge, server and asker of one configuration (bench.Configuration) on `network`."""

    def __init__(self, network: LinkNetwork, config, out: Path):
        self.network, self.config, self.name = network, config, config.name
        self.folder = out / config.name
        self._processes: list[LoggedProcess] = []
        self._driver: DriverProcess | None = None

    def _spawn(self, name: str, namespace: str, argv: list[str], env: dict) -> LoggedProcess:
        process = LoggedProcess(name, self.network.exec_prefix(namespace) + argv, env,
                                self.folder / f'{name}.log', REPO)
        self._processes.append(process)
        return process

    def start(self, scene) -> None:
        """Start the edge and the server (without waiting for them)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, '-m', 'colvlm_bench.cli']
        self._spawn('edge', self.network.edge, command + [
            'edge', '--source', str(scene.images), '--namespace', NAMESPACE,
            *self.config.edge_args, *EDGE_ARGS], _environment(self.config, SERVER_ADDRESS))
        # Beside the edge (full edge), the server's peer is the asker across the link.
        at_edge = self.config.server_at_edge
        self._spawn('server', self.network.edge if at_edge else self.network.server,
                    command + ['server', '--namespace', NAMESPACE, *self.config.server_args,
                               *SERVER_ARGS],
                    _environment(self.config, SERVER_ADDRESS if at_edge else EDGE_ADDRESS))

    def wait_ready(self, question: str) -> None:
        """Both ready, the asker started, and answers coming back OK (then a few more)."""
        edge, server = self._processes[:2]
        edge.wait_for(r'\bready:', START_TIMEOUT_S)
        server.wait_for(r'\bready: model', START_TIMEOUT_S)
        self._driver = DriverProcess(
            self.network.exec_prefix(self.network.server) + [
                sys.executable, '-m', DRIVER, '--namespace', NAMESPACE],
            _environment(self.config, EDGE_ADDRESS), self.folder / 'driver.log', REPO)
        self._processes.append(self._driver)
        self._driver.reply(START_TIMEOUT_S)  # {'ready': true}
        deadline = time.monotonic() + READY_TIMEOUT_S
        attempt = ok = 0
        while ok <= WARM_UP_QUERIES:
            attempt += 1
            reply = self.ask(f'{self.name}-warm-{attempt}', question, timeout_s=20.0)
            ok += reply['status'] == 'OK'
            if not ok and time.monotonic() > deadline:
                raise ProcessFailed(
                    f'{self.name}: no OK answer within {READY_TIMEOUT_S:g} s of start (last: '
                    f'{reply.get("status")} {reply.get("status_message", "")})')
            if not ok:
                time.sleep(1.0)

    def ask(self, query_id: str, question: str, timeout_s: float | None = None) -> dict:
        timeout_s = timeout_s or self.config.answer_timeout_s
        return self._driver.request({'op': 'ask', 'id': query_id, 'question': question,
                                     'timeout_s': timeout_s}, timeout_s + 30.0)

    def counts(self, ids: list[str], grace_s: float = 1.0) -> dict[str, int]:
        """Answers received per query id, after `grace_s` for late duplicates."""
        return self._driver.request({'op': 'counts', 'ids': ids, 'grace_s': grace_s},
                                    grace_s + 60.0)['counts']

    def stop(self) -> None:
        while self._processes:
            self._processes.pop().stop()
