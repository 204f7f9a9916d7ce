"""Pruning schedules: how a policy's ratios are reached, in one step or several.

`oneshot` prunes to the final ratios at once. `iterative` and `agp` take `steps` steps with
fine-tuning between them; at step t of T the ratio is the final ratio times t/T (`iterative`)
or times 1 - (1 - t/T)^3 (`agp`, the cubic ramp of Zhu and Gupta, 2017: prune fast while there
is redundancy, slowly near the end). Strategies that cannot grow in steps (N:M, layer removal,
low-rank, heads) apply at the last step.
"""

from __future__ import annotations

SCHEDULES = ("oneshot", "iterative", "agp")


def ramp(schedule: str, steps: int) -> list[float]:
    """Fractions of the final ratios to reach after each step; the last is always 1.0."""
    if schedule == "oneshot" or steps <= 1:
        return [1.0]
    if schedule == "iterative":
        return [t / steps for t in range(1, steps + 1)]
    if schedule == "agp":
        return [1.0 - (1.0 - t / steps) ** 3 for t in range(1, steps + 1)]
    raise ValueError(f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")
