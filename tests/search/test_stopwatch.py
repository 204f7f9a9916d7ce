"""Where a trial's time goes: phases nest without double counting; the gate's waits count."""

from __future__ import annotations

import contextlib
import time

import pytest

from autoprune.search.stopwatch import PHASES, TIME_METRICS, Stopwatch
from autoprune.training import no_guard


def test_an_inner_phase_pauses_the_outer_one():
    watch = Stopwatch()
    with watch.phase("train"):
        time.sleep(0.02)
        with watch.phase("evaluate"):
            time.sleep(0.05)
        time.sleep(0.02)
    assert watch.seconds["evaluate"] == pytest.approx(0.05, abs=0.02)
    assert watch.seconds["train"] == pytest.approx(0.04, abs=0.02)
    assert watch.seconds["train"] < watch.seconds["evaluate"]


def test_entering_and_leaving_a_guard_is_time_at_the_gate():
    events = []

    @contextlib.contextmanager
    def slow_gate():
        time.sleep(0.03)  # waiting while a neighbour is measured
        events.append("in")
        yield
        events.append("out")

    watch = Stopwatch()
    guard = watch.guarded(slow_gate)
    with watch.phase("train"), guard():
        time.sleep(0.01)
    assert events == ["in", "out"]
    assert watch.seconds["gate"] == pytest.approx(0.03, abs=0.02)
    assert watch.seconds["train"] < 0.03
    assert watch.guarded(no_guard) is no_guard


def test_the_gate_is_left_when_the_step_fails():
    left = []

    @contextlib.contextmanager
    def gate():
        try:
            yield
        finally:
            left.append(True)

    watch = Stopwatch()
    with pytest.raises(ValueError), watch.guarded(gate)():
        raise ValueError("diverged")
    assert left == [True]


def test_metrics_name_every_phase():
    assert list(Stopwatch().metrics()) == list(TIME_METRICS)
    assert len(TIME_METRICS) == len(PHASES) and TIME_METRICS[0] == "time_data_s"
