"""linkbench's numbers: one summary per (configuration, loss) setting, the printed table, the
tuned/naive ratios and the full-cloud vs two-stage latency ratio. Pure: dicts in, text out.
"""

from __future__ import annotations

import math

import numpy as np

from colvlm_bench.glyphvqa.questions import is_correct

# The seed's figures at 1 Mbps (ProSemCom, ../shared/seeds/001).
PROSEMCOM_FULL_CLOUD_S, PROSEMCOM_FULL_EDGE_S, PROSEMCOM_SPLIT_S = 9.32, 7.98, 6.94
PATHS = {'naive': 'full cloud', 'full-edge': 'full edge', 'tuned': 'image two-stage',
         'layers': 'token layers'}
TARGET_DELIVERED = 0.99


def _seconds(values_ms: list[float], q: float | None = None) -> float | None:
    if not values_ms:
        return None
    value = np.mean(values_ms) if q is None else np.percentile(values_ms, q)
    return round(float(value) / 1e3, 3)


def summarize_setting(config: str, loss: float, replies: list[dict], counts: dict[str, int],
                      before: dict, after: dict, elapsed_s: float) -> dict:
    """One setting's figures. Latency: question published -> answer received, OK answers
    only; outside the model: that less the model's passes (first, ViCrop's, second), which is
    what the link and its configuration change. Payload bytes: what the answers say crossed
    the uplink for them (serialized frame + crops); wire bytes: what the edge's interface sent
    while each query was in flight (packet headers, DDS retransmissions, heartbeats and
    discovery included), per query asked."""
    asked = len(replies)
    ok = [r for r in replies if r['status'] == 'OK']
    latencies = [r['latency_ms'] for r in ok]
    # What the configuration changes: the latency less the model's own passes.
    outside_model = [r['latency_ms'] - r['first_pass_ms'] - r['locate_ms'] - r['second_pass_ms']
                     for r in ok]
    wire = {key: after[key] - before[key] for key in ('uplink_bytes', 'uplink_packets',
                                                      'downlink_bytes', 'uplink_queue_drops')}
    statuses: dict[str, int] = {}
    for reply in replies:
        statuses[reply['status']] = statuses.get(reply['status'], 0) + 1
    return {
        'config': config, 'loss_percent': loss, 'asked': asked, 'delivered': len(ok),
        'replied': sum(r['status'] != 'NO_ANSWER' for r in replies),
        'answers_per_query': sorted(set(counts.values())), 'statuses': statuses,
        'latency_p50_s': _seconds(latencies, 50), 'latency_p95_s': _seconds(latencies, 95),
        'latency_mean_s': _seconds(latencies), 'latency_max_s': _seconds(latencies, 100),
        'outside_model_p50_s': _seconds(outside_model, 50),
        'outside_model_p95_s': _seconds(outside_model, 95),
        'uplink_payload_bytes_per_query': round(float(np.mean(
            [r['uplink_bytes'] for r in ok])), 1) if ok else None,
        'uplink_wire_bytes_per_query': round(sum(r['uplink_wire_bytes'] for r in replies)
                                             / max(1, asked), 1),
        'uplink_wire_packets_per_query': round(sum(r['uplink_wire_packets'] for r in replies)
                                               / max(1, asked), 1),
        'uplink_wire_bytes_setting': wire['uplink_bytes'],
        'downlink_wire_bytes_per_query': round(wire['downlink_bytes'] / max(1, asked), 1),
        'uplink_ip_fragments_per_query': round(after['uplink_ip_fragments'] / max(1, asked), 1),
        'uplink_packets_dropped': after['uplink_dropped_packets'],
        'uplink_loss_measured': round(after['uplink_dropped_packets']
                                      / max(1, wire['uplink_packets']), 4),
        'uplink_queue_drops': wire['uplink_queue_drops'],
        'accuracy': round(sum(is_correct(r['answer'], r['answers']) for r in ok) / asked, 4)
        if asked else None,
        'refined_share': round(sum(r['decision'] in ('LOCAL_CROP', 'TOKEN_LAYERS')
                                   for r in ok) / len(ok), 4)
        if ok else None,
        'elapsed_s': round(elapsed_s, 1), 'replies': replies,
    }


def _cell(value, scale: float = 1.0, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 'n/a'
    return f'{value * scale:.{digits}f}' if isinstance(value, float) else str(value)


def _ratio(a, b) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def comparisons(results: list[dict]) -> dict:
    """tuned/naive ratios per loss, full cloud vs two-stage at 0% loss, the targets."""
    by = {(r['config'], r['loss_percent']): r for r in results}
    ratios = {}
    for (config, loss), tuned in sorted(by.items()):
        naive = by.get(('naive', loss))
        if config != 'tuned' or naive is None:
            continue
        ratios[loss] = {
            'p95': _ratio(tuned['latency_p95_s'], naive['latency_p95_s']),
            'p50': _ratio(tuned['latency_p50_s'], naive['latency_p50_s']),
            'uplink_wire_bytes': _ratio(tuned['uplink_wire_bytes_per_query'],
                                        naive['uplink_wire_bytes_per_query'])}
    summary = {'tuned_over_naive': ratios}
    clean_tuned, clean_naive = by.get(('tuned', 0.0)), by.get(('naive', 0.0))
    if clean_tuned and clean_naive:
        summary['full_cloud_over_two_stage'] = {
            'full_cloud_mean_s': clean_naive['latency_mean_s'],
            'two_stage_mean_s': clean_tuned['latency_mean_s'],
            'ratio': _ratio(clean_naive['latency_mean_s'], clean_tuned['latency_mean_s']),
            'prosemcom_ratio': round(PROSEMCOM_FULL_CLOUD_S / PROSEMCOM_SPLIT_S, 3)}
    clean = {config: by[(config, 0.0)] for config in PATHS if (config, 0.0) in by}
    if clean_naive and len(clean) > 2:
        summary['paths'] = {
            PATHS[config]: {'mean_s': r['latency_mean_s'], 'p95_s': r['latency_p95_s'],
                            'over_full_cloud': _ratio(r['latency_mean_s'],
                                                      clean_naive['latency_mean_s']),
                            'uplink_wire_bytes_per_query': r['uplink_wire_bytes_per_query'],
                            'accuracy': r['accuracy']}
            for config, r in clean.items()}
    ten_tuned, ten_naive = by.get(('tuned', 10.0)), by.get(('naive', 10.0))
    if ten_tuned:
        summary['target_delivered_at_10'] = {
            'share': round(ten_tuned['delivered'] / ten_tuned['asked'], 4),
            'met': ten_tuned['delivered'] / ten_tuned['asked'] >= TARGET_DELIVERED}
    if ten_tuned and ten_naive and ten_tuned['latency_p95_s'] and ten_naive['latency_p95_s']:
        summary['target_p95_at_10'] = {
            'ratio': _ratio(ten_tuned['latency_p95_s'], ten_naive['latency_p95_s']),
            'met': ten_tuned['latency_p95_s'] < ten_naive['latency_p95_s']}
    return summary


def table(results: list[dict], summary: dict, header: str) -> str:
    columns = ('config', 'loss %', 'answered', 'p50 s', 'p95 s', 'mean s', 'non-model p95 s',
               'uplink B/q', 'wire B/q', 'IP frags/q', 'accuracy %', 'refined %')
    rows = [columns]
    for r in results:
        rows.append((r['config'], f'{r["loss_percent"]:g}', f'{r["delivered"]}/{r["asked"]}',
                     _cell(r['latency_p50_s']), _cell(r['latency_p95_s']),
                     _cell(r['latency_mean_s']), _cell(r['outside_model_p95_s']),
                     _cell(r['uplink_payload_bytes_per_query'], digits=0),
                     _cell(r['uplink_wire_bytes_per_query'], digits=0),
                     _cell(r['uplink_ip_fragments_per_query'], digits=1),
                     _cell(r['accuracy'], 100, 1), _cell(r['refined_share'], 100, 0)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = [header, '']
    for index, row in enumerate(rows):
        lines.append('  '.join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            lines.append('  '.join('-' * width for width in widths))
    idle = {r['config']: r['idle_uplink_bytes_per_s'] for r in reversed(results)
            if 'idle_uplink_bytes_per_s' in r}
    if idle:
        lines += ['', 'idle uplink (no query in flight): ' + ', '.join(
            f'{config} {rate:.0f} B/s' for config, rate in idle.items())]
    if summary['tuned_over_naive']:
        lines += ['', 'tuned / naive:']
        for loss, ratio in summary['tuned_over_naive'].items():
            lines.append(f'  loss {loss:g}%: p95 {_cell(ratio["p95"], digits=3)}, p50 '
                         f'{_cell(ratio["p50"], digits=3)}, uplink wire bytes '
                         f'{_cell(ratio["uplink_wire_bytes"], digits=3)}')
    cloud = summary.get('full_cloud_over_two_stage')
    if cloud:
        lines.append(f'full cloud (send the original) vs two-stage, 0% loss: mean '
                     f'{_cell(cloud["full_cloud_mean_s"])} s vs {_cell(cloud["two_stage_mean_s"])}'
                     f' s, ratio {_cell(cloud["ratio"])} (ProSemCom seed: '
                     f'{PROSEMCOM_FULL_CLOUD_S} s vs {PROSEMCOM_SPLIT_S} s, ratio '
                     f'{cloud["prosemcom_ratio"]:.2f})')
    paths = summary.get('paths')
    if paths:
        lines += ['', 'paths at 0% loss (mean s, x full cloud; ProSemCom seed: full cloud '
                  f'{PROSEMCOM_FULL_CLOUD_S} s, full edge {PROSEMCOM_FULL_EDGE_S} s, split '
                  f'{PROSEMCOM_SPLIT_S} s):']
        lines += [f'  {name}: {_cell(row["mean_s"])} s, {_cell(row["over_full_cloud"])}x, '
                  f'{_cell(row["uplink_wire_bytes_per_query"], digits=0)} wire B/q'
                  for name, row in paths.items()]
    delivered = summary.get('target_delivered_at_10')
    if delivered:
        lines.append(f'target, 10% loss, tuned answered >= {TARGET_DELIVERED:.0%}: '
                     f'{delivered["share"]:.1%} ({"met" if delivered["met"] else "NOT met"})')
    p95 = summary.get('target_p95_at_10')
    if p95:
        lines.append(f'target, 10% loss, tuned p95 below naive p95: ratio {p95["ratio"]:.3f} '
                     f'({"met" if p95["met"] else "NOT met"})')
    return '\n'.join(lines)
