"""Where a study's wall time went: its stages (the base model, the like-for-like reference,
the trials, the front), and within the trials the share of the slots' time spent on each
phase of a trial, in slots left idle at the end (the last trials running, none left to start),
the rest being the framework's (Ray, Optuna, MLflow, slots waiting for their next trial, and
for their first: Ray starting the trials' worker processes)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from autoprune.search.records import TrialRecord
from autoprune.search.stopwatch import PHASES, metric_name

STAGES = {"base": "base model", "reference": "reference fine-tune", "trials": "trials",
          "front": "front"}
PHASE_WORDS = {"data": "reading data", "prune": "pruning", "train": "training",
               "evaluate": "evaluating", "latency": "timing latency",
               "gate": "waiting at the latency gate"}
# The trial's own phases that are the framework's time: reports wait for Tune's driver.
FRAMEWORK_PHASES = ("report",)


@dataclass
class StudyClock:
    """Wall seconds per stage of a study."""

    started: float = field(default_factory=time.monotonic)
    stages: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    began: dict[str, float] = field(default_factory=dict)  # stage -> first entered (time.time)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.began.setdefault(name, time.time())
        begun = time.monotonic()
        try:
            yield
        finally:
            self.stages[name] += time.monotonic() - begun


def idle_at_end(records: Sequence[TrialRecord], slots: int) -> float:
    """Slot-seconds from the last trial's start to the last trial's end in which a slot ran
    no trial: fewer trials were left than slots, so none could start there."""
    spans = [(r.started, r.finished) for r in records
             if r.started is not None and r.finished is not None]
    if not spans:
        return 0.0
    last_start = max(start for start, _ in spans)
    ends = sorted(end for _, end in spans if end > last_start)  # every span began by then
    idle, since = 0.0, last_start
    for done, end in enumerate(ends):
        idle += (end - since) * max(0, slots - (len(ends) - done))
        since = end
    return idle


def starting(records: Sequence[TrialRecord], slots: int, since: float) -> float:
    """Slot-seconds from `since` (the trials' start) to each slot's first trial starting:
    Tune starting its run and Ray a worker process per slot, which imports Tune and torch."""
    starts = sorted(r.started for r in records if r.started is not None)[:slots]
    return sum(max(0.0, start - since) for start in starts)


def breakdown(clock: StudyClock, records: Sequence[TrialRecord], slots: int) -> dict[str, float]:
    """The study's time as MLflow metrics: `time_<stage>_s`, the trials' summed
    `time_trials_<phase>_s`, and `share_<phase>` of the trial slots' time (stage seconds times
    the concurrent trials), `share_idle_end` the slots idle at the end (`idle_at_end`),
    `share_framework` the rest (reports to Tune included, and `share_startup`, the slots'
    wait for their first trial, `starting`)."""
    out = {"time_total_s": time.monotonic() - clock.started}
    out.update({f"time_{name}_s": s for name, s in clock.stages.items()})
    capacity = clock.stages["trials"] * max(slots, 1)
    spent = {p: sum(r.metrics.get(metric_name(p), 0.0) for r in records) for p in PHASES}
    out.update({f"time_trials_{p}_s": s for p, s in spent.items()})
    if capacity > 0:
        out.update({f"share_{p}": s / capacity for p, s in spent.items()})
        work = sum(s for p, s in spent.items() if p not in FRAMEWORK_PHASES)
        rest = max(0.0, 1.0 - work / capacity)
        out["share_idle_end"] = min(idle_at_end(records, slots) / capacity, rest)
        out["share_framework"] = rest - out["share_idle_end"]
        if "trials" in clock.began:
            out["share_startup"] = min(starting(records, slots, clock.began["trials"])
                                       / capacity, out["share_framework"])
    return out


def describe(times: dict[str, float], slots: int) -> str:
    """The breakdown in two lines."""
    stages = ", ".join(f"{words} {times[f'time_{name}_s']:.0f} s"
                       for name, words in STAGES.items() if times[f"time_{name}_s"] >= 0.5)
    line = f"time: {times['time_total_s']:.0f} s in all; {stages}"
    if "share_framework" not in times:
        return line
    start = (f", {100 * times['share_startup']:.0f}% the slots waiting for their first trial "
             "(Ray Tune starting, and a worker process each importing Tune and torch)"
             if "share_startup" in times else "")
    shares = ", ".join(f"{words} {100 * times[f'share_{p}']:.0f}%"
                       for p, words in PHASE_WORDS.items() if times[f"share_{p}"] >= 0.005)
    return (f"{line}\n  of the trials' {slots} slots x {times['time_trials_s']:.0f} s: "
            f"{shares}, framework {100 * times['share_framework']:.0f}% "
            f"(of it {100 * times['share_report']:.0f}% trials waiting on Ray Tune to take "
            f"their reports{start}; the rest Ray, Optuna, MLflow, a slot waiting for its next "
            "trial), "
            f"idle at the end {100 * times['share_idle_end']:.0f}% (the last trials "
            "running, none left to start)")
