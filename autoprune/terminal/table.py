"""The front as a plain-text table."""

from __future__ import annotations

from collections.abc import Sequence

from autoprune.search.records import TrialRecord
from autoprune.search.reference import Reference


def front_table(front: Sequence[TrialRecord], test: dict[int, float], base: Reference,
                full_val: dict[int, float] | None = None) -> str:
    """A table of the Pareto front, fastest first, under the base model's rows (and its
    fine-tuned twin's, when the study ran it). `test` holds the front's test scores and
    `full_val` its scores on the whole validation split (when trials saw a subset)."""
    objective = base.objective
    name = objective.metric[:12]
    fmt = objective.format
    show_full = bool(full_val)
    header = (f"{'trial':>5}  {'val ' + name:>12}  "
              + (f"{'all val':>9}  " if show_full else "")
              + f"{'test':>9}  {'latency':>10}  {'speedup':>7}  {'params':>9}  policy")
    lines = [header, "-" * len(header)]

    def row(label: str, val: float, full: float | None, tested: float | None, latency: float,
            speedup: float, params: str, policy: str) -> str:
        full_text = f"{fmt(full) if full is not None else '-':>9}  " if show_full else ""
        return (f"{label:>5}  {fmt(val):>12}  {full_text}"
                f"{fmt(tested) if tested is not None else '-':>9}  {latency:7.3f} ms  "
                f"{speedup:6.2f}x  {params:>9}  {policy}")

    lines.append(row("base", base.metric, None, base.test_metric, base.latency_ms, 1.0, "",
                     "unpruned"))
    if base.finetuned is not None:
        lines.append(row("base", base.finetuned, None, None, base.latency_ms, 1.0, "",
                         "unpruned, fine-tuned like a trial"))
    for r in front:
        m = r.metrics
        lines.append(row(str(r.number), m[objective.metric], (full_val or {}).get(r.number),
                         test.get(r.number), m["latency_ms"],
                         m.get("speedup", base.latency_ms / m["latency_ms"]),
                         f"{m.get('params', float('nan')):,.0f}", r.summary))
    return "\n".join(lines)
