"""A study's progress: one line per finished trial, and a live status of the running ones
(step, latest loss, ETA) with the study's ETA."""

from __future__ import annotations

import math
import time
from typing import TextIO

from autoprune.search.pareto import front_records
from autoprune.search.records import TrialRecord
from autoprune.tasks import Objective
from autoprune.terminal.live import Live, duration


class Progress:
    """Counts finished, failed and stopped trials and the front's size, one line per trial;
    `running` follows the fine-tuning of the trials in flight."""

    def __init__(self, total: int, objective: Objective, stream: TextIO | None = None,
                 already: int = 0, concurrency: int = 1, interval_s: float = 30.0) -> None:
        self.total = total
        self.objective = objective
        self.already = already  # trials an earlier run of a resumed study finished
        self.concurrency = max(concurrency, 1)
        self.live = Live(stream, interval_s)
        self.records: list[TrialRecord] = []
        self.started = time.monotonic()
        # trial number -> (first seen: time, step), (latest: step, steps, loss, time)
        self.flight: dict[int, tuple[tuple[float, int], tuple[int, int, float, float]]] = {}

    def front_size(self) -> int:
        return len(front_records(self.records, self.objective))

    def update(self, record: TrialRecord) -> None:
        """A trial finished: its line stays."""
        self.records.append(record)
        self.flight.pop(record.number, None)
        failed = sum(r.state == "failed" for r in self.records)
        stopped = sum(r.state == "stopped" for r in self.records)
        count = self.already + len(self.records)
        head = (f"[{count:>3}/{self.total}] {time.monotonic() - self.started:5.0f}s "
                f"failed {failed}  stopped {stopped}  front {self.front_size()}  | "
                f"trial {record.number:>3}: ")
        self.live.line(head + self._tail(record))
        self._show(force=True)

    def _tail(self, record: TrialRecord) -> str:
        if record.state == "stopped":
            return f"stopped early: {record.error}"
        if record.state != "complete":
            where = record.tags.get("error_file")
            return f"FAILED: {record.error}" + (f" (traceback: {where})" if where else "")
        m = record.metrics
        measured = record.latency_source == "measured"
        spread = f" ±{100 * m['latency_cv']:.0f}%" if measured else ""
        if "latency_uncertainty" in m:  # predicted under adaptive measurement: its interval
            spread = f" ±{100 * (math.exp(m['latency_uncertainty']) - 1):.0f}%"
        tail = (f"{self.objective.metric} {self.objective.format(m[self.objective.metric])}  "
                f"{m['latency_ms']:.3f} ms{spread} ({m['speedup']:.2f}x, "
                f"{record.latency_source})  {record.summary}")
        resumed = record.tags.get("resumed_from_step")
        if resumed:  # its worker died, and Tune ran it again from its checkpoint
            tail += f"  [worker lost; resumed at step {resumed}]"
        return tail + ("  [outside the constraints]" if not record.feasible else "")

    def running(self, number: int, step: int | None, steps: int, loss: float) -> None:
        """A running trial reached `step` of `steps` with `loss` (None: it ended)."""
        if step is None:
            self.flight.pop(number, None)
            return
        now = time.monotonic()
        first = self.flight[number][0] if number in self.flight else (now, step)
        self.flight[number] = (first, (step, steps, loss, now))
        self._show()

    def _show(self, force: bool = False) -> None:
        lines = [self._trial_line(n, *state) for n, state in sorted(self.flight.items())]
        if lines:
            lines.append(self._study_line())
        self.live.status(lines, force=force and bool(lines))

    def _trial_line(self, number: int, first: tuple[float, int],
                    latest: tuple[int, int, float, float]) -> str:
        (t0, s0), (step, steps, loss, t) = first, latest
        rate = (step - s0) / (t - t0) if t > t0 and step > s0 else math.nan
        eta = (steps - step) / rate if rate == rate and rate > 0 else math.nan
        return (f"  trial {number:>3}: fine-tuning step {step}/{steps}, loss {loss:.4f}, "
                f"ETA {duration(eta)}")

    def _study_line(self) -> str:
        done = len(self.records)
        left = self.total - self.already - done
        elapsed = time.monotonic() - self.started
        eta = elapsed / done * left if done else math.nan
        return (f"  study: {self.already + done}/{self.total} trials done, "
                f"{duration(elapsed)} elapsed, ETA {duration(eta)}")

    def close(self) -> None:
        self.live.close()
