"""One linkbench run: the configurations side by side, each on its own link, asked in turn.

A configuration is the whole deployment choice: QoS file, Cyclone DDS XML, edge and server
parameters. Their deployments run at the same time and get the same questions alternately,
one query in flight at a time, so the machine's load falls on all of them alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
import time

import cv2

from colvlm_bench.glyphvqa.dataset import load_dataset, write_dataset

from .deployment import Deployment
from .report import summarize_setting

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
NAIVE_FRESH_TIMEOUT_S = 30.0   # the naive server waits this long for a full-size frame
# Cyclone pings every participant index (0..32) of a static peer for its first 30 s
# (Discovery/InitialLocatorPruneDelay): kilobytes a second that are start-up, not per query.
SETTLE_AFTER_START_S = 35.0
IDLE_MEASURE_S = 5.0           # then the background rate with no query in flight


@dataclass(frozen=True)
class Configuration:
    name: str
    description: str
    edge_args: tuple[str, ...]
    server_args: tuple[str, ...]
    environment: dict[str, str] = field(default_factory=dict)  # COLVLM_QOS_FILE, CYCLONEDDS_URI
    answer_timeout_s: float = 30.0  # the asker gives up on an answer after this long
    server_at_edge: bool = False  # the whole VLM on the edge's side: only answers cross


def configurations(original_size: tuple[int, int]) -> dict[str, Configuration]:
    """'tuned' (what colvlm ships for lossy links) and 'naive' (defaults, send the original),
    the two ablations that swap only the link settings (QoS file + Cyclone DDS XML), and the
    other paths on the tuned link: 'layers' (visual-token layers instead of pixels) and
    'full-edge' (the server beside the edge, so only questions and answers cross)."""
    side = max(original_size)  # full resolution, padded to the square the model takes
    lossy_link = {'COLVLM_QOS_FILE': str(REPO / 'config/qos-lossy.yaml'),
                  'CYCLONEDDS_URI': f'file://{REPO / "config/cyclonedds-lossy.xml"}'}
    default_link = {'COLVLM_QOS_FILE': str(HERE / 'qos-ros-defaults.yaml')}
    two_stage = {
        'edge_args': ('--config', str(REPO / 'config/edge-lossy.yaml')),
        'server_args': ('--config', str(REPO / 'config/server-lossy.yaml'),
                        '-p', 'policy=entropy')}
    full_cloud = {
        'edge_args': ('-p', f'global.width={side}', '-p', f'global.height={side}',
                      '-p', 'global.quality=85', '-p', 'global.byte_budget=0'),
        'server_args': ('-p', 'policy=global',
                        '-p', f'frame.fresh_timeout_s={NAIVE_FRESH_TIMEOUT_S}'),
        'answer_timeout_s': NAIVE_FRESH_TIMEOUT_S + 30.0}
    small = '128 px global frame under a 2400 B budget, entropy-gated crops'
    original = (f'full-resolution JPEG q85 of the original ({side}x{side} padded), answered '
                'from it (full cloud)')
    lossy = 'config/qos-lossy.yaml, config/cyclonedds-lossy.xml'
    default = 'ROS 2 default QoS, Cyclone DDS defaults'
    layers = {
        'edge_args': (*two_stage['edge_args'], '-p', 'layers.enabled=true',
                      '-p', 'layers.send_global=false'),
        'server_args': ('--config', str(REPO / 'config/server-lossy.yaml'),
                        '-p', 'policy=layers')}
    return {
        'tuned': Configuration('tuned', f'{small}, {lossy}', environment=lossy_link,
                               **two_stage),
        'layers': Configuration(
            'layers', 'token layers of the 128 px frame (tower split, the edge default '
            f'layers.proactive sent, more on request while unsure), no global image, {lossy}',
            environment=lossy_link, **layers),
        'full-edge': Configuration(
            'full-edge', f'the server beside the edge (whole VLM on the edge, {small}), '
            f'only the answer crosses, {lossy}', environment=lossy_link, server_at_edge=True,
            **two_stage),
        'naive': Configuration('naive', f'{original}, {default}', environment=default_link,
                               **full_cloud),
        'tuned-default-link': Configuration('tuned-default-link', f'{small}, {default}',
                                            environment=default_link, **two_stage),
        'naive-lossy-link': Configuration('naive-lossy-link', f'{original}, {lossy}',
                                          environment=lossy_link, **full_cloud),
    }


@dataclass(frozen=True)
class Scene:
    images: Path                                 # a folder with the one image
    size: tuple[int, int]                        # (width, height) px
    questions: list                              # glyphvqa Question


def prepare_scene(out: Path, seed: int) -> Scene:
    folder = out / 'data'
    if not (folder / 'questions.jsonl').is_file():
        write_dataset(folder, n_images=1, seed=seed, overwrite=True)
    questions = load_dataset(folder)
    image = cv2.imread(str(folder / questions[0].image), cv2.IMREAD_COLOR)  # (H, W, 3) BGR
    return Scene(folder / 'images', (image.shape[1], image.shape[0]), questions)


def run(deployments: list[Deployment], scene: Scene, losses: list[float], queries: int,
        settle: bool = True, progress=print) -> list[dict]:
    """Every loss setting for every deployment; one summary dict per (deployment, setting).
    With `settle`, settings start once discovery's start-up traffic is over, and each summary
    carries its link's idle background rate, measured just before them."""
    started = time.monotonic()
    for deployment in deployments:
        deployment.start(scene)
    for deployment in deployments:
        deployment.wait_ready(scene.questions[0].question)
    idle = {d.name: {} for d in deployments}
    if settle:
        for deployment in deployments:
            deployment.network.set_loss(0.0)
        time.sleep(max(0.0, started + SETTLE_AFTER_START_S - time.monotonic()))
        before = [d.network.counters() for d in deployments]
        time.sleep(IDLE_MEASURE_S)
        for deployment, first in zip(deployments, before, strict=True):
            last = deployment.network.counters()
            idle[deployment.name] = {f'idle_{side}_bytes_per_s': round(
                (last[f'{side}_bytes'] - first[f'{side}_bytes']) / IDLE_MEASURE_S, 1)
                for side in ('uplink', 'downlink')}
    results = []
    for loss in losses:
        for deployment in deployments:
            deployment.network.set_loss(loss)
        before = {d.name: d.network.counters() for d in deployments}
        replies: dict[str, list[dict]] = {d.name: [] for d in deployments}
        began = time.monotonic()
        for index in range(queries):
            question = scene.questions[index % len(scene.questions)]
            # Alternate who goes first, so that neither always follows the other's query.
            order = deployments if index % 2 == 0 else deployments[::-1]
            for deployment in order:
                sent_before = deployment.network.uplink_sent()
                reply = deployment.ask(f'{deployment.name}-{loss:g}-{index}', question.question)
                sent_after = deployment.network.uplink_sent()
                replies[deployment.name].append(reply | {
                    'answers': list(question.answers),
                    'uplink_wire_bytes': sent_after[0] - sent_before[0],
                    'uplink_wire_packets': sent_after[1] - sent_before[1]})
        elapsed = time.monotonic() - began
        for deployment in deployments:
            own = replies[deployment.name]
            counts = deployment.counts([r['id'] for r in own])
            summary = summarize_setting(deployment.name, loss, own, counts,
                                        before[deployment.name],
                                        deployment.network.counters(), elapsed)
            results.append(summary | idle[deployment.name])
            progress(f'  {deployment.name} loss {loss:g}%: {summary["delivered"]}/'
                     f'{summary["asked"]} answered, p95 {summary["latency_p95_s"]} s')
    return results
