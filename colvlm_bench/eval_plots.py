"""The evaluation's plots, after the paper's: accuracy against uplink bytes and against
server compute, one curve per policy (swept policies as lines, fixed ones as points)."""

from __future__ import annotations

from pathlib import Path

PLOTS = (('uplink_bytes_mean', 'uplink bytes per query (mean, serialized)',
          'accuracy_vs_uplink.png'),
         ('llm_tokens_mean', 'server compute: LLM input + output tokens per query (mean)',
          'accuracy_vs_compute.png'))
MARKERS = {'global': 'o', 'entropy': 's', 'always': '^', 'random': 'x', 'hd': 'D',
           'oracle': '*', 'layers': 'P'}


def plot_tradeoffs(entries: list[dict], out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    by_policy: dict[str, list[dict]] = {}
    for entry in entries:
        by_policy.setdefault(entry['policy'], []).append(entry)
    written = []
    for key, label, name in PLOTS:
        figure, axes = plt.subplots(figsize=(6.4, 4.4))
        for policy, rows in by_policy.items():
            rows = sorted(rows, key=lambda r: r[key])
            xs = [r[key] for r in rows]
            ys = [100.0 * r['accuracy'] for r in rows]
            style = '-' if len(rows) > 1 else ''
            axes.plot(xs, ys, style, marker=MARKERS.get(policy, '.'), label=policy)
        axes.set_xlabel(label)
        axes.set_ylabel('accuracy (%)')
        axes.grid(True, alpha=0.3)
        if by_policy:
            axes.legend(title='policy')
        else:  # e.g. a replay whose questions have no reference answers
            axes.text(0.5, 0.5, 'no scored questions', ha='center', transform=axes.transAxes)
        figure.tight_layout()
        path = Path(out) / name
        figure.savefig(path, dpi=120)
        plt.close(figure)
        written.append(path)
    return written
