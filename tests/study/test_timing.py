"""Where a study's time went: stages, and the trial slots' time split by phase."""

from __future__ import annotations

import pytest

from autoprune.search.records import TrialRecord
from autoprune.study.timing import StudyClock, breakdown, describe, idle_at_end, starting


def _record(number: int, state: str = "complete", span: tuple[float, float] | None = None,
            **seconds: float) -> TrialRecord:
    started, finished = span or (None, None)
    return TrialRecord(number, {}, state, {f"time_{k}_s": v for k, v in seconds.items()},
                       started=started, finished=finished)


def test_the_slots_time_is_split_by_phase_and_the_rest_is_the_framework():
    clock = StudyClock()
    clock.stages.update(base=20.0, reference=3.0, trials=50.0, front=5.0)
    records = [_record(0, train=40.0, evaluate=5.0, latency=10.0, prune=2.0, data=1.0),
               _record(1, "stopped", train=20.0, evaluate=2.0, latency=5.0),
               TrialRecord(2, {}, "failed", error="x")]
    times = breakdown(clock, records, slots=2)
    assert times["time_trials_train_s"] == 60.0 and times["time_trials_gate_s"] == 0.0
    assert times["share_train"] == pytest.approx(0.6)
    assert times["share_latency"] == pytest.approx(0.15)
    assert times["share_framework"] == pytest.approx(1 - 85 / 100)
    text = describe(times, 2)
    assert "base model 20 s" in text and "2 slots x 50 s" in text
    assert "training 60%" in text and "framework 15%" in text
    assert "waiting at the latency gate" not in text  # nothing spent there


def test_without_trials_there_are_no_shares():
    clock = StudyClock()
    times = breakdown(clock, [], slots=2)
    assert "share_framework" not in times
    assert describe(times, 2).startswith("time: ")


def test_time_trials_spend_waiting_on_tune_counts_as_the_frameworks():
    clock = StudyClock()
    clock.stages.update(trials=50.0)
    times = breakdown(clock, [_record(0, train=60.0, report=5.0)], slots=2)
    assert times["share_report"] == pytest.approx(0.05)
    assert times["share_framework"] == pytest.approx(0.4)  # the 5% reporting included
    assert "framework 40% (of it 5% trials waiting on Ray Tune" in describe(times, 2)


def test_slots_left_idle_at_the_end_are_not_the_frameworks():
    # Two slots: trial 0 then 2 in one, trial 1 then 3 in the other. Trial 3 starts last
    # (t=12); trial 2 ends at 14, so that slot has nothing left to run from 14 to 20 (6 s).
    spans = {0: (0.0, 3.0), 1: (0.5, 11.5), 2: (3.5, 14.0), 3: (12.0, 20.0)}
    records = [_record(n, span=span, train=span[1] - span[0]) for n, span in spans.items()]
    assert idle_at_end(records, slots=2) == pytest.approx(6.0)
    assert idle_at_end(records, slots=3) == pytest.approx(2 + 2 * 6.0)  # a third slot: 12-14
    assert idle_at_end(records[3:], slots=1) == 0.0
    assert idle_at_end([_record(0, train=1.0)], slots=2) == 0.0  # no times, nothing known
    clock = StudyClock()
    clock.stages.update(trials=21.0)  # a second outside any trial
    times = breakdown(clock, records, slots=2)
    work = sum(e - s for s, e in spans.values())
    assert times["share_idle_end"] == pytest.approx(6.0 / 42)
    assert times["share_framework"] == pytest.approx(1 - work / 42 - 6.0 / 42)
    assert "idle at the end 14% (the last trials running, none left to start)" in \
        describe(times, 2)


def test_the_slots_wait_for_their_first_trial_is_the_frameworks_start_up():
    # Two slots; the trials stage began at t=100: the first trials started at 104 and 104.5,
    # the third (at 110, in a slot already used) is not a slot's first.
    spans = {0: (104.0, 110.0), 1: (104.5, 112.0), 2: (110.0, 115.0)}
    records = [_record(n, span=span, train=span[1] - span[0]) for n, span in spans.items()]
    assert starting(records, slots=2, since=100.0) == pytest.approx(4.0 + 4.5)
    assert starting(records, slots=1, since=100.0) == pytest.approx(4.0)
    assert starting([_record(0, train=1.0)], slots=2, since=100.0) == 0.0  # no times known
    clock = StudyClock()
    clock.stages.update(trials=16.0)
    clock.began["trials"] = 100.0
    times = breakdown(clock, records, slots=2)
    assert times["share_startup"] == pytest.approx(8.5 / 32)
    assert times["share_startup"] <= times["share_framework"]
    assert "27% the slots waiting for their first trial (Ray Tune starting" in \
        describe(times, 2)
    # a stage never entered through the clock knows no start: no share, and none printed
    clock.began.clear()
    assert "share_startup" not in breakdown(clock, records, slots=2)


def test_the_clock_keeps_when_a_stage_first_began():
    clock = StudyClock()
    with clock.stage("trials"):
        pass
    first = clock.began["trials"]
    with clock.stage("trials"):
        pass
    assert clock.began["trials"] == first and clock.stages["trials"] >= 0.0
