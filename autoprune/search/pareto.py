"""The metric/latency Pareto front: the task's metric in its direction, latency minimised."""

from __future__ import annotations

from collections.abc import Sequence

from autoprune.search.records import TrialRecord
from autoprune.tasks import Objective


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Return indices of the non-dominated (score, latency) points, fastest first; a higher
    score is better.

    A point is dominated when another is at least as good and at least as fast, and strictly
    better in one of the two. Exact duplicates are all kept.
    """
    front = []
    for i, (acc_i, lat_i) in enumerate(points):
        dominated = any(
            acc_j >= acc_i and lat_j <= lat_i and (acc_j > acc_i or lat_j < lat_i)
            for j, (acc_j, lat_j) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][1], -points[i][0]))


def front_records(records: Sequence[TrialRecord], objective: Objective) -> list[TrialRecord]:
    """The completed trials that meet the study's constraints and are on their front."""
    done = [r for r in records if r.state == "complete" and r.feasible]
    points = [(objective.score(r.metrics[objective.metric]), r.metrics["latency_ms"])
              for r in done]
    return [done[i] for i in pareto_front(points)]
