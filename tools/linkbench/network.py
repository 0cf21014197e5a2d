"""Two network namespaces joined by a veth pair: a shaped, lossy link between edge and server.

The edge's end sends through `tc tbf` (the uplink rate, with a bounded queue); each end's
ingress drops a random share of IPv4 packets with an nftables `numgen random` rule in a
netdev table, before the IP stack reassembles fragments, so loss hits link packets as on a
radio (ARP is spared so that the neighbour cache cannot stall the run). It knows nothing of
DDS or colvlm: it runs commands in the namespaces and reads the counters. Needs root, `ip`,
`tc` and `nft`; always leaves nothing behind (see `LinkNetwork.close`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

PREFIX = 'clb'                         # namespace and interface names start with this
EDGE_ADDRESS, SERVER_ADDRESS = '10.77.0.1', '10.77.0.2'
_TABLE = 'colvlm_linkbench'
_LOSS, _FRAGMENTS = 'loss', 'fragments'        # nft rule comments, for their counters
_NAMESPACE = re.compile(rf'^{PREFIX}-(\d+)-\d+-(edge|server)$')
REQUIRED_TOOLS = {'ip': 'iproute2', 'tc': 'iproute2', 'nft': 'nftables'}


class NetworkUnavailable(RuntimeError):
    """This machine cannot build the link (not root, a tool or kernel feature missing)."""


def missing_requirements() -> str | None:
    """Why the link cannot be built here, in one line, or None."""
    if os.geteuid() != 0:
        return 'network namespaces, tc and nft need root'
    missing = [f'{tool} (apt-get install {package})' for tool, package in REQUIRED_TOOLS.items()
               if shutil.which(tool) is None]
    if missing:
        return 'missing ' + ', '.join(missing)
    return None


def _run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise NetworkUnavailable(f'{" ".join(argv)} failed: {result.stderr.strip()}')
    return result


def sweep_stale() -> list[str]:
    """Delete namespaces left by linkbench runs whose process is gone (killed with -9)."""
    removed = []
    for line in _run(['ip', 'netns', 'list'], check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ''
        match = _NAMESPACE.match(name)
        if match and not os.path.exists(f'/proc/{match.group(1)}'):
            _run(['ip', 'netns', 'delete', name], check=False)
            removed.append(name)
    return removed


class LinkNetwork:
    """Namespaces `clb-<pid>-<index>-edge` and `-server`, veth `clb<pid><index>e` <-> `...s`
    (index 0..9: one link per configuration, so that they can run side by side).

    rate_kbit shapes edge -> server; queue_ms bounds the shaper's queue (a modem's buffer);
    `set_loss` changes the drop rate of both directions at any time.
    """

    def __init__(self, rate_kbit: int, queue_ms: float = 1000.0, index: int = 0):
        if not 0 <= index <= 9:
            raise ValueError(f'index must be 0..9 (interface names are short), got {index}')
        self.rate_kbit, self.queue_ms = int(rate_kbit), float(queue_ms)
        tag = f'{PREFIX}-{os.getpid()}-{index}'
        self.edge, self.server = f'{tag}-edge', f'{tag}-server'
        self.edge_device = f'{PREFIX}{os.getpid()}{index}e'
        self.server_device = f'{PREFIX}{os.getpid()}{index}s'
        self.loss_percent = 0.0
        self._created: list[str] = []

    def __enter__(self) -> LinkNetwork:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        reason = missing_requirements()
        if reason:
            raise NetworkUnavailable(reason)
        for namespace in (self.edge, self.server):
            _run(['ip', 'netns', 'add', namespace])
            self._created.append(namespace)
            _run(['ip', '-n', namespace, 'link', 'set', 'lo', 'up'])
        _run(['ip', 'link', 'add', self.edge_device, 'netns', self.edge, 'type', 'veth',
              'peer', 'name', self.server_device, 'netns', self.server])
        for namespace, device, address in ((self.edge, self.edge_device, EDGE_ADDRESS),
                                           (self.server, self.server_device, SERVER_ADDRESS)):
            _run(['ip', '-n', namespace, 'addr', 'add', f'{address}/30', 'dev', device])
            _run(['ip', '-n', namespace, 'link', 'set', device, 'up'])
        # burst: three full-size packets (tbf passes nothing larger than its bucket);
        # limit: queue_ms of the link, at least 16 packets.
        limit = max(16 * 1514, int(self.rate_kbit * 1000 / 8 * self.queue_ms / 1000))
        _run(['ip', 'netns', 'exec', self.edge, 'tc', 'qdisc', 'add', 'dev', self.edge_device,
              'root', 'tbf', 'rate', f'{self.rate_kbit}kbit', 'burst', str(3 * 1514),
              'limit', str(limit)])
        self.set_loss(0.0)

    def close(self) -> None:
        """Delete the namespaces (the veth pair goes with them). Processes still inside keep
        theirs alive until they exit, so stop them first."""
        while self._created:
            _run(['ip', 'netns', 'delete', self._created.pop()], check=False)

    def exec_prefix(self, namespace: str) -> list[str]:
        """The argv prefix that runs a command inside `namespace`."""
        return ['ip', 'netns', 'exec', namespace]

    def set_loss(self, percent: float) -> None:
        """Drop `percent` % of IPv4 packets arriving at either end (0 = none)."""
        if not 0 <= percent < 100:
            raise ValueError(f'loss must be in [0, 100) %, got {percent}')
        # numgen draws an integer; per mille gives 0.1% steps.
        per_mille = round(percent * 10)
        for namespace, device in ((self.server, self.server_device),
                                  (self.edge, self.edge_device)):
            loss = (f'meta protocol ip numgen random mod 1000 < {per_mille} counter drop'
                    if per_mille else 'meta protocol ip counter')
            script = (f'table netdev {_TABLE} {{}}\ndelete table netdev {_TABLE}\n'
                      f'table netdev {_TABLE} {{\n  chain ingress {{\n'
                      f'    type filter hook ingress device "{device}" priority filter;'
                      f' policy accept;\n'
                      # IP fragments: a datagram larger than the MTU, lost whole with any one.
                      f'    meta protocol ip ip frag-off & 0x3fff != 0 counter comment '
                      f'"{_FRAGMENTS}"\n'
                      f'    {loss} comment "{_LOSS}"\n  }}\n}}\n')
            result = subprocess.run(self.exec_prefix(namespace) + ['nft', '-f', '-'],
                                    input=script, capture_output=True, text=True)
            if result.returncode != 0:
                raise NetworkUnavailable(f'nft in {namespace} failed: {result.stderr.strip()}')
        self.loss_percent = float(percent)

    def uplink_sent(self) -> tuple[int, int]:
        """(bytes, packets) the edge's device has sent: one cheap read, for per-query sums."""
        link = json.loads(_run(['ip', '-n', self.edge, '-s', '-j', 'link', 'show', 'dev',
                                self.edge_device]).stdout)[0]
        return link['stats64']['tx']['bytes'], link['stats64']['tx']['packets']

    def counters(self) -> dict[str, int]:
        """Bytes and packets each end's device sent (Ethernet frames, so with headers) and
        packets the shaper dropped from a full queue, since the namespaces were made; IP
        fragments received and packets the loss rules dropped, since the last `set_loss`."""
        values = {}
        for side, namespace, device in (('uplink', self.edge, self.edge_device),
                                        ('downlink', self.server, self.server_device)):
            link = json.loads(_run(['ip', '-n', namespace, '-s', '-j', 'link', 'show', 'dev',
                                    device]).stdout)[0]
            values[f'{side}_bytes'] = link['stats64']['tx']['bytes']
            values[f'{side}_packets'] = link['stats64']['tx']['packets']
        for side, namespace in (('uplink', self.server), ('downlink', self.edge)):
            counts = self._nft_counters(namespace)
            values[f'{side}_dropped_packets'] = counts[_LOSS] if self.loss_percent else 0
            values[f'{side}_ip_fragments'] = counts[_FRAGMENTS]
        qdisc = json.loads(_run(self.exec_prefix(self.edge) + [
            'tc', '-s', '-j', 'qdisc', 'show', 'dev', self.edge_device]).stdout)
        values['uplink_queue_drops'] = sum(q.get('drops', 0) for q in qdisc)
        return values

    def _nft_counters(self, namespace: str) -> dict[str, int]:
        """Packets counted by each commented rule since the last `set_loss`."""
        listing = json.loads(_run(self.exec_prefix(namespace) + [
            'nft', '-j', 'list', 'table', 'netdev', _TABLE]).stdout)
        counts = {_LOSS: 0, _FRAGMENTS: 0}
        for item in listing.get('nftables', []):
            rule = item.get('rule', {})
            if rule.get('comment') in counts:
                counts[rule['comment']] = sum(e['counter']['packets'] for e in rule['expr']
                                              if 'counter' in e)
        return counts
