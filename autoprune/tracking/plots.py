"""The Pareto front as CSV, a static PNG and an interactive HTML page."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from autoprune.search.records import TrialRecord
from autoprune.search.reference import Reference
from autoprune.tasks import Objective

FIELDS = ("latency_ms", "latency_p90_ms", "latency_cv", "speedup", "params",
          "nonzero_params", "sparsity", "macs", "size_mb")


def write_front_csv(front: Sequence[TrialRecord], test: dict[int, float], path: Path,
                    objective: Objective) -> None:
    """One row per Pareto trial, fastest first."""
    name = objective.metric
    fields = ("trial", name, f"test_{name}", *FIELDS, "latency_source", "policy")
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for record in front:
            row = {k: record.metrics.get(k, "") for k in (name, *FIELDS)}
            row.update({"trial": record.number, f"test_{name}": test.get(record.number, ""),
                        "latency_source": record.latency_source, "policy": record.summary})
            writer.writerow(row)


def _axis_label(records: Sequence[TrialRecord]) -> str:
    sources = {r.latency_source for r in records if r.latency_source}
    return f"latency (ms, {'/'.join(sorted(sources)) or 'measured'})"


def _y(objective: Objective, value: float) -> float:
    return 100 * value if objective.percent else value


def _y_label(objective: Objective) -> str:
    better = "higher" if objective.maximize else "lower"
    unit = " (%)" if objective.percent else ""
    return f"validation {objective.metric}{unit}, {better} is better"


def _bases(base: Reference) -> list[tuple[str, float]]:
    points = [("unpruned base", base.metric)]
    if base.finetuned is not None:
        points.append(("base fine-tuned like a trial", base.finetuned))
    return points


def plot_front_png(records: Sequence[TrialRecord], front: Sequence[TrialRecord],
                   base: Reference, title: str, path: Path) -> None:
    """Scatter of every completed trial with the front as a step line and the base model."""
    import logging

    import matplotlib

    # Its first use on a machine builds a font cache and says so at INFO; the study has its
    # own progress output.
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    objective = base.objective
    name = objective.metric
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    done = [r for r in records if r.state == "complete"]
    ax.scatter([r.metrics["latency_ms"] for r in done],
               [_y(objective, r.metrics[name]) for r in done],
               s=22, color="#9aa5b1", label="trials")
    xs = [r.metrics["latency_ms"] for r in front]
    ys = [_y(objective, r.metrics[name]) for r in front]
    ax.step(xs, ys, where="post", color="#d9480f", linewidth=1.5)
    ax.scatter(xs, ys, s=40, color="#d9480f", label="Pareto front", zorder=3)
    for r in front:
        ax.annotate(f"#{r.number}", (r.metrics["latency_ms"], _y(objective, r.metrics[name])),
                    textcoords="offset points", xytext=(4, 4), fontsize=7)
    for (label, value), marker in zip(_bases(base), ("*", "P"), strict=False):
        ax.scatter([base.latency_ms], [_y(objective, value)], marker=marker, s=160,
                   color="#1864ab", label=label, zorder=4)
    ax.set_xlabel(_axis_label(records))
    ax.set_ylabel(_y_label(objective))
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right" if objective.maximize else "upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_front_html(records: Sequence[TrialRecord], front: Sequence[TrialRecord],
                    base: Reference, title: str, path: Path) -> None:
    """Interactive plot (zoom, hover with policy and metrics), self-contained for offline use."""
    import plotly.graph_objects as go

    objective = base.objective
    name = objective.metric

    def hover(r: TrialRecord) -> str:
        m = r.metrics
        return (f"trial {r.number}<br>{name} {objective.format(m[name])}<br>"
                f"latency {m['latency_ms']:.3f} ms ({r.latency_source})<br>"
                f"speedup {m.get('speedup', float('nan')):.2f}x<br>"
                f"params {m.get('params', float('nan')):,.0f}<br>{r.summary}")

    done = [r for r in records if r.state == "complete"]
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=[r.metrics["latency_ms"] for r in done],
        y=[_y(objective, r.metrics[name]) for r in done], mode="markers", name="trials",
        marker={"color": "#9aa5b1"}, text=[hover(r) for r in done], hoverinfo="text"))
    fig.add_trace(go.Scatter(
        x=[r.metrics["latency_ms"] for r in front],
        y=[_y(objective, r.metrics[name]) for r in front], mode="lines+markers",
        line={"shape": "hv", "color": "#d9480f"}, name="Pareto front",
        text=[hover(r) for r in front], hoverinfo="text"))
    for (label, value), symbol in zip(_bases(base), ("star", "cross"), strict=False):
        fig.add_trace(go.Scatter(x=[base.latency_ms], y=[_y(objective, value)],
                                 mode="markers", name=label,
                                 marker={"symbol": symbol, "size": 14, "color": "#1864ab"}))
    fig.update_layout(title=title, xaxis_title=_axis_label(records),
                      yaxis_title=_y_label(objective), template="plotly_white")
    fig.write_html(path, include_plotlyjs=True, full_html=True)
