"""Timing again at the end: the base model and the front, the faster time kept for each, every
speedup divided anew."""

from __future__ import annotations

from torch import nn

from autoprune.hardware.latency import Latency
from autoprune.search.records import TrialRecord
from autoprune.search.reference import Reference
from autoprune.study.retime import retime, retime_base
from autoprune.tasks import Objective


class _Backend:
    """Times a model by its name: base, or the trial number it was rebuilt from."""

    def __init__(self, times: dict[str, float], source: str = "measured") -> None:
        self.times, self.source, self.asked = times, source, []

    def latency(self, model: nn.Module, refresh: bool = False, int8_calibration=None) -> Latency:  # noqa: ANN001
        self.asked.append((model.name, refresh))
        ms = self.times[model.name]
        return Latency(ms, ms, 0.01, self.source, "cpu")


class _Named(nn.Module):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


class _Tracker:
    def __init__(self) -> None:
        self.logged: list[tuple[dict, str | None, int]] = []

    def log_metrics(self, metrics: dict, run_id: str | None = None, step: int = 0) -> None:
        self.logged.append((dict(metrics), run_id, step))

    def tag_trial(self, record: TrialRecord, key: str, value: str) -> None:
        self.logged.append(({key: value}, record.run_id, -1))


BASE = Reference(Objective("accuracy", "maximize"), 0.99, 2.0)


def _trial(number: int, accuracy: float, ms: float) -> TrialRecord:
    return TrialRecord(number, {}, "complete", {"accuracy": accuracy, "latency_ms": ms,
                                                "speedup": 2.0 / ms, "steps": 17.0},
                       run_id=f"r{number}")


def test_the_base_and_the_front_are_timed_again_and_the_faster_kept():
    records = [_trial(0, 0.98, 1.0), _trial(1, 0.95, 0.8), _trial(2, 0.90, 1.5),
               TrialRecord(3, {}, "failed", error="x")]
    backend = _Backend({"base": 1.6, "0": 0.9, "1": 0.85})
    tracker, lines = _Tracker(), []
    base, models = retime(backend, _Named("base"), BASE, records,
                          lambda r: _Named(str(r.number)), None, tracker, lines.append)
    assert base.latency_ms == 1.6 and set(models) == {0, 1}  # trial 2 is off the front
    assert records[0].metrics["latency_ms"] == 0.9, "faster: kept"
    assert records[1].metrics["latency_ms"] == 0.8, "slower: the search's time stays"
    assert records[0].metrics["speedup"] == 1.6 / 0.9 and records[2].metrics["speedup"] == 1.6 / 1.5
    assert all(refresh for _, refresh in backend.asked)
    # At the step the trial's final metrics were logged at (where its fine-tuning ended):
    # MLflow's latest value, the one its UI and queries show, is the new one.
    assert ({"latency_ms": 0.9, "latency_p90_ms": 0.9, "latency_cv": 0.01,
             "speedup": 1.6 / 0.9}, "r0", 17) in tracker.logged
    assert any(m.get("base_latency_ms") == 1.6 and run is None
               for m, run, _ in tracker.logged)
    assert "front timed again: 1 of 2 models faster" in lines[-1]


def test_a_slower_or_predicted_second_timing_of_the_base_changes_nothing():
    for backend in (_Backend({"base": 2.5}), _Backend({"base": 1.0}, source="predicted")):
        tracker = _Tracker()
        assert retime_base(backend, _Named("base"), BASE, tracker, print) == BASE
        assert tracker.logged == []


def test_a_bench_that_no_longer_answers_leaves_the_search_times():
    from autoprune.hardware.bench import BenchUnavailable

    class _Gone:
        def latency(self, model, refresh=False, int8_calibration=None):  # noqa: ANN001, ANN202
            raise BenchUnavailable("latency bench gave up after 2 attempt(s)")

    records, lines = [_trial(0, 0.98, 1.0)], []
    base, models = retime(_Gone(), _Named("base"), BASE, records,
                          lambda r: _Named(str(r.number)), None, _Tracker(), lines.append)
    assert base == BASE and models == {} and records[0].metrics["speedup"] == 2.0
    assert "did not answer" in lines[-1]


def test_predicted_front_models_are_measured_until_the_front_is_all_measured():
    """Adaptive measurement: a front model the search only predicted takes its measured time
    even when slower; if that drops it off the front, the model that takes its place is
    measured too."""
    records = [_trial(0, 0.98, 1.0), _trial(1, 0.95, 0.5), _trial(2, 0.93, 0.7)]
    for r in records[1:]:
        r.latency_source = "predicted"
        r.metrics["latency_uncertainty"] = 0.1
    records[0].latency_source = "measured"
    # Trial 1 was predicted at 0.5 ms but takes 1.2: dominated by trial 0 now, and trial 2
    # (predicted 0.7, off the front until then) joins the front and is measured at 0.75.
    backend = _Backend({"base": 2.0, "0": 1.1, "1": 1.2, "2": 0.75})
    tracker, lines = _Tracker(), []
    _, models = retime(backend, _Named("base"), BASE, records,
                       lambda r: _Named(str(r.number)), None, tracker, lines.append)
    assert set(models) == {0, 1, 2}
    assert records[1].metrics["latency_ms"] == 1.2 and records[2].metrics["latency_ms"] == 0.75
    assert records[0].metrics["latency_ms"] == 1.0  # measured in the search: the faster stays
    assert all(r.latency_source == "measured" for r in records[1:])
    assert all("latency_uncertainty" not in r.metrics for r in records)
    assert ({"latency_source": "measured"}, "r1", -1) in tracker.logged
    assert ({"latency_source": "measured"}, "r2", -1) in tracker.logged
    assert ({"latency_measured_at_front": 2.0}, None, 0) in tracker.logged
    assert "2 the search had only predicted, measured now" in lines[-1]
