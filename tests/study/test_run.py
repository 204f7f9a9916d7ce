"""Pieces of a study's run that a test can drive without Ray."""

from __future__ import annotations

from torch import nn

from autoprune.hardware.latency import Latency
from autoprune.search.records import TrialRecord
from autoprune.search.reference import Reference
from autoprune.study.run import retime_base
from autoprune.tasks import Objective


class _Backend:
    def __init__(self, ms: float, source: str = "measured") -> None:
        self.ms, self.source = ms, source

    def latency(self, model: nn.Module, refresh: bool = False, int8_calibration=None) -> Latency:  # noqa: ANN001
        return Latency(self.ms, self.ms, 0.01, self.source, "cpu")


class _Tracker:
    def __init__(self) -> None:
        self.logged: list[tuple[dict, str | None]] = []

    def log_metrics(self, metrics: dict, run_id: str | None = None) -> None:
        self.logged.append((dict(metrics), run_id))


BASE = Reference(Objective("accuracy", "maximize"), 0.99, 2.0)


def _records() -> list[TrialRecord]:
    return [TrialRecord(0, {}, "complete", {"latency_ms": 1.0, "speedup": 2.0}, run_id="r0"),
            TrialRecord(1, {}, "failed", error="x", run_id="r1")]


def test_a_faster_second_timing_of_the_base_divides_every_speedup_anew():
    records, tracker = _records(), _Tracker()
    base = retime_base(_Backend(1.6), nn.Identity(), BASE, records, tracker)
    assert base.latency_ms == 1.6 and records[0].metrics["speedup"] == 1.6
    assert ({"speedup": 1.6}, "r0") in tracker.logged
    assert any(m.get("base_latency_ms") == 1.6 and run is None for m, run in tracker.logged)


def test_a_slower_or_predicted_second_timing_changes_nothing():
    for backend in (_Backend(2.5), _Backend(1.0, source="predicted")):
        records, tracker = _records(), _Tracker()
        assert retime_base(backend, nn.Identity(), BASE, records, tracker) == BASE
        assert records[0].metrics["speedup"] == 2.0 and tracker.logged == []
