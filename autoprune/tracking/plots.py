"""The Pareto front as CSV, a static PNG and an interactive HTML page."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from autoprune.search.records import TrialRecord

CSV_FIELDS = ("trial", "accuracy", "test_accuracy", "latency_ms", "latency_p90_ms",
              "latency_cv", "speedup", "params", "nonzero_params", "sparsity", "macs", "size_mb",
              "latency_source", "policy")


def write_front_csv(front: Sequence[TrialRecord], test_accuracy: dict[int, float],
                    path: Path) -> None:
    """One row per Pareto trial, fastest first."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for record in front:
            row = {k: record.metrics.get(k, "") for k in CSV_FIELDS}
            row.update(trial=record.number, test_accuracy=test_accuracy.get(record.number, ""),
                       latency_source=record.latency_source, policy=record.summary)
            writer.writerow(row)


def _axis_label(records: Sequence[TrialRecord]) -> str:
    sources = {r.latency_source for r in records if r.latency_source}
    return f"latency (ms, {'/'.join(sorted(sources)) or 'measured'})"


def plot_front_png(records: Sequence[TrialRecord], front: Sequence[TrialRecord],
                   base: tuple[float, float], title: str, path: Path) -> None:
    """Scatter of every completed trial with the front as a step line and the base model."""
    import logging

    import matplotlib

    # Its first use on a machine builds a font cache and says so at INFO; the study has its
    # own progress output.
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    done = [r for r in records if r.state == "complete"]
    ax.scatter([r.metrics["latency_ms"] for r in done],
               [100 * r.metrics["accuracy"] for r in done],
               s=22, color="#9aa5b1", label="trials")
    xs = [r.metrics["latency_ms"] for r in front]
    ys = [100 * r.metrics["accuracy"] for r in front]
    ax.step(xs, ys, where="post", color="#d9480f", linewidth=1.5)
    ax.scatter(xs, ys, s=40, color="#d9480f", label="Pareto front", zorder=3)
    for r in front:
        ax.annotate(f"#{r.number}", (r.metrics["latency_ms"], 100 * r.metrics["accuracy"]),
                    textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.scatter([base[1]], [100 * base[0]], marker="*", s=160, color="#1864ab",
               label="unpruned base", zorder=4)
    ax.set_xlabel(_axis_label(records))
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_front_html(records: Sequence[TrialRecord], front: Sequence[TrialRecord],
                    base: tuple[float, float], title: str, path: Path) -> None:
    """Interactive plot (zoom, hover with policy and metrics), self-contained for offline use."""
    import plotly.graph_objects as go

    def hover(r: TrialRecord) -> str:
        m = r.metrics
        return (f"trial {r.number}<br>accuracy {100 * m['accuracy']:.2f}%<br>"
                f"latency {m['latency_ms']:.3f} ms ({r.latency_source})<br>"
                f"speedup {m['speedup']:.2f}x<br>params {m['params']:,.0f}<br>{r.summary}")

    done = [r for r in records if r.state == "complete"]
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=[r.metrics["latency_ms"] for r in done], y=[100 * r.metrics["accuracy"] for r in done],
        mode="markers", name="trials", marker={"color": "#9aa5b1"},
        text=[hover(r) for r in done], hoverinfo="text"))
    fig.add_trace(go.Scatter(
        x=[r.metrics["latency_ms"] for r in front], y=[100 * r.metrics["accuracy"] for r in front],
        mode="lines+markers", line={"shape": "hv", "color": "#d9480f"}, name="Pareto front",
        text=[hover(r) for r in front], hoverinfo="text"))
    fig.add_trace(go.Scatter(x=[base[1]], y=[100 * base[0]], mode="markers", name="unpruned base",
                             marker={"symbol": "star", "size": 14, "color": "#1864ab"}))
    fig.update_layout(title=title, xaxis_title=_axis_label(records),
                      yaxis_title="validation accuracy (%)", template="plotly_white")
    fig.write_html(path, include_plotlyjs=True, full_html=True)
