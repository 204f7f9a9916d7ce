"""Where a trial's time goes: seconds spent reading data, pruning, training, evaluating,
timing latency, at the latency gate (waiting while a neighbour is measured, and the round
trips to the gate), and reporting to Ray Tune (each report waits for Tune's driver)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from autoprune.training import Guard, no_guard

PHASES = ("data", "prune", "train", "evaluate", "latency", "gate", "report")


def metric_name(phase: str) -> str:
    """The trial metric that holds a phase's seconds."""
    return f"time_{phase}_s"


TIME_METRICS = tuple(metric_name(p) for p in PHASES)


@dataclass
class Stopwatch:
    """Seconds per phase. Phases nest: an inner phase pauses the one around it."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    _open: list[list] = field(default_factory=list)  # [phase, since], innermost last

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        now = time.perf_counter()
        if self._open:
            outer = self._open[-1]
            self.seconds[outer[0]] += now - outer[1]
        self._open.append([name, now])
        try:
            yield
        finally:
            end = time.perf_counter()
            self.seconds[name] += end - self._open.pop()[1]
            if self._open:
                self._open[-1][1] = end

    def guarded(self, guard: Guard) -> Guard:
        """`guard` with its entry and exit counted as time at the gate."""
        if guard is no_guard:
            return guard

        @contextlib.contextmanager
        def timed() -> Iterator[None]:
            stack = contextlib.ExitStack()
            with self.phase("gate"):
                stack.enter_context(guard())
            try:
                yield
            finally:
                with self.phase("gate"):
                    stack.close()

        return timed

    def metrics(self) -> dict[str, float]:
        return {metric_name(name): s for name, s in self.seconds.items()}
