"""What a study prints: one progress line per finished trial and the final front table."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TextIO

from autoprune.search.pareto import front_records
from autoprune.search.records import TrialRecord


class Progress:
    """Counts finished and failed trials and the current front size, one line per trial."""

    def __init__(self, total: int, stream: TextIO | None = None, already: int = 0) -> None:
        self.total = total
        self.already = already  # trials an earlier run of a resumed study finished
        self.stream = stream or sys.stdout
        self.records: list[TrialRecord] = []
        self.started = time.monotonic()

    def front_size(self) -> int:
        return len(front_records(self.records))

    def update(self, record: TrialRecord) -> None:
        self.records.append(record)
        failed = sum(r.state == "failed" for r in self.records)
        stopped = sum(r.state == "stopped" for r in self.records)
        count = self.already + len(self.records)
        head = (f"[{count:>3}/{self.total}] {time.monotonic() - self.started:5.0f}s "
                f"failed {failed}  stopped {stopped}  front {self.front_size()}  | "
                f"trial {record.number:>3}: ")
        if record.state == "complete":
            m = record.metrics
            measured = record.latency_source == "measured"
            spread = f" ±{100 * m['latency_cv']:.0f}%" if measured else ""
            tail = (f"acc {100 * m['accuracy']:6.2f}%  {m['latency_ms']:.3f} ms{spread} "
                    f"({m['speedup']:.2f}x, {record.latency_source})  {record.summary}")
            if not record.feasible:
                tail += "  [outside the constraints]"
        elif record.state == "stopped":
            tail = f"stopped early: {record.error}"
        else:
            tail = f"FAILED: {record.error}"
        print(head + tail, file=self.stream, flush=True)


def front_table(front: Sequence[TrialRecord], test_accuracy: dict[int, float],
                base: tuple[float, float, float]) -> str:
    """A plain-text table of the Pareto front, fastest first, under the base model's row.

    `base` is (validation accuracy, latency in ms, test accuracy) of the unpruned model.
    """
    header = (f"{'trial':>5}  {'val acc':>8}  {'test acc':>8}  {'latency':>10}  {'speedup':>7}  "
              f"{'params':>9}  policy")
    lines = [header, "-" * len(header),
             f"{'base':>5}  {100 * base[0]:7.2f}%  {100 * base[2]:7.2f}%  {base[1]:7.3f} ms  "
             f"{1.0:6.2f}x  {'':>9}  unpruned"]
    for r in front:
        m = r.metrics
        test = test_accuracy.get(r.number)
        lines.append(
            f"{r.number:>5}  {100 * m['accuracy']:7.2f}%  "
            f"{(f'{100 * test:7.2f}%') if test is not None else '       -':>8}  "
            f"{m['latency_ms']:7.3f} ms  {m.get('speedup', base[1] / m['latency_ms']):6.2f}x  "
            f"{m.get('params', float('nan')):>9,.0f}  {r.summary}")
    return "\n".join(lines)
