"""The bench and core gate actors: a measurement never overlaps training, and neither a dead
trainer nor a hung or dead bench can block a study for ever."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time

import pytest
import ray
import torch

from autoprune.hardware.bench import Bench, BenchLatency, BenchUnavailable
from autoprune.hardware.gate import CoreGate, TrainingGuard


def test_measurement_waits_for_training_and_blocks_new_training(local_ray):
    gate = CoreGate.remote()
    guard = TrainingGuard(gate)
    events: list[str] = []

    def train_step(name: str, seconds: float) -> None:
        with guard():
            events.append(f"{name} start")
            time.sleep(seconds)
            events.append(f"{name} end")

    first = threading.Thread(target=train_step, args=("a", 0.6))
    first.start()
    deadline = time.monotonic() + 30
    while "a start" not in events and time.monotonic() < deadline:
        time.sleep(0.01)  # until training "a" holds the gate
    ray.get(gate.enter_measure.remote())
    events.append("measure start")
    second = threading.Thread(target=train_step, args=("b", 0.0))
    second.start()
    time.sleep(0.3)  # "b" must not start while measuring
    events.append("measure end")
    ray.get(gate.exit_measure.remote())
    first.join()
    second.join()
    assert events.index("a end") < events.index("measure start")
    assert events.index("measure end") < events.index("b start")


def test_bench_measures_once_per_architecture(local_ray, settings_for):
    profile = settings_for("hardware=cpu").hardware
    profile = dataclasses.replace(profile, measure=dataclasses.replace(
        profile.measure, warmup=1, repeats=3, number=2))
    gate = CoreGate.options(name="test-gate").remote()  # noqa: F841 (the handle keeps it alive)
    bench = Bench.remote(profile, torch.zeros(1, 1, 8, 8), "test-gate")
    backend = BenchLatency(bench)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU())
    first = backend.latency(model)
    again = backend.latency(torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU()))
    assert first.source == "measured" and first.median_ms > 0
    assert again == first
    assert ray.get(bench.stats.remote()) == {"measured": 1, "cached": 1}


def test_refresh_measures_again_and_keeps_the_faster(local_ray, settings_for):
    profile = settings_for("hardware=cpu").hardware
    profile = dataclasses.replace(profile, measure=dataclasses.replace(
        profile.measure, warmup=1, repeats=3, number=2))
    bench = Bench.remote(profile, torch.zeros(1, 1, 8, 8), None)
    backend = BenchLatency(bench)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3))
    first = backend.latency(model)
    second = backend.latency(model, refresh=True)
    assert ray.get(bench.stats.remote())["measured"] == 2
    assert second.median_ms <= first.median_ms


def _quick_profile(settings_for):
    profile = settings_for("hardware=cpu").hardware
    return dataclasses.replace(profile, measure=dataclasses.replace(
        profile.measure, warmup=1, repeats=3, number=2))


def test_a_dead_trainers_hold_is_dropped(local_ray):
    gate = CoreGate.remote()
    ray.get(gate.enter_train.remote("trial-a"))  # its worker dies before exit_train
    waiting = gate.enter_measure.remote()
    ready, _ = ray.wait([waiting], timeout=0.5)
    assert not ready, "a held gate must make the measurement wait"
    ray.get(gate.drop.remote("trial-a"))
    assert ray.get(waiting, timeout=5) is True
    ray.get(gate.exit_measure.remote())
    ray.get(gate.enter_train.remote("trial-a"))  # a late call from the dead trial holds nothing
    assert ray.get(gate.enter_measure.remote(), timeout=5) is True


def test_a_restarted_bench_releases_what_the_old_one_held(local_ray):
    gate = CoreGate.remote()
    old = ray.get(gate.new_bench.remote())
    assert ray.get(gate.enter_measure.remote(old)) is True  # then the bench hangs
    trainer = gate.enter_train.remote("trial-b")
    assert not ray.wait([trainer], timeout=0.5)[0]
    new = ray.get(gate.new_bench.remote())
    ray.get(trainer, timeout=5)
    ray.get(gate.exit_train.remote("trial-b"))
    assert ray.get(gate.enter_measure.remote(new), timeout=5) is True
    ray.get(gate.exit_measure.remote(old))  # the old bench's late release changes nothing
    assert not ray.wait([gate.enter_train.remote("trial-c")], timeout=0.5)[0]
    ray.get(gate.exit_measure.remote(new))


@pytest.mark.extended
def test_a_hung_bench_is_restarted_and_answers(local_ray, settings_for):
    gate = CoreGate.options(name="hung-gate").remote()  # noqa: F841 (the handle keeps it alive)
    bench = Bench.options(max_restarts=-1, max_task_retries=-1).remote(
        _quick_profile(settings_for), torch.zeros(1, 1, 8, 8), "hung-gate")
    hung = ray.get(bench.pid.remote())
    os.kill(hung, signal.SIGSTOP)  # the device stops answering
    started = time.monotonic()
    # A restarted bench imports torch before it answers: seconds on a busy machine.
    result = BenchLatency(bench, timeout_s=8, attempts=5).latency(
        torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3)))
    assert result.source == "measured" and result.median_ms > 0
    assert ray.get(bench.pid.remote()) != hung
    assert time.monotonic() - started < 120


def _wait_until_dead(actor, within_s: float = 30.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            ray.get(actor.node_id.remote(), timeout=5)
        except ray.exceptions.RayActorError:
            return
        time.sleep(0.1)
    raise AssertionError(f"the actor still answered {within_s} s after it was killed")


def test_a_bench_that_is_gone_fails_the_call_with_the_reason(local_ray, settings_for):
    bench = Bench.remote(_quick_profile(settings_for), torch.zeros(1, 1, 8, 8), None)
    ray.get(bench.node_id.remote())
    ray.kill(bench, no_restart=True)  # the device left for good
    _wait_until_dead(bench)  # the kill is asynchronous: a call made at once may still run
    started = time.monotonic()
    with pytest.raises(BenchUnavailable,
                       match=r"gave up after 1 attempt\(s\): the bench process died"):
        BenchLatency(bench, timeout_s=3, attempts=2).latency(torch.nn.Conv2d(1, 8, 3))
    assert time.monotonic() - started < 30


def test_a_crashed_bench_is_restarted_by_ray_and_answers(local_ray, settings_for):
    bench = Bench.options(max_restarts=-1, max_task_retries=-1).remote(
        _quick_profile(settings_for), torch.zeros(1, 1, 8, 8), None)
    crashed = ray.get(bench.pid.remote())
    os.kill(crashed, signal.SIGKILL)
    result = BenchLatency(bench, timeout_s=30, attempts=1).latency(torch.nn.Conv2d(1, 8, 3))
    assert result.source == "measured"
    assert ray.get(bench.pid.remote()) != crashed


def test_a_bench_whose_device_never_appears_stops_the_study_in_time(local_ray, settings_for):
    from autoprune.errors import StudyFailed
    from autoprune.search.latency_plan import _bench_node

    profile = _quick_profile(settings_for)
    profile = dataclasses.replace(profile, measure=dataclasses.replace(profile.measure,
                                                                       timeout_s=2))
    bench = Bench.options(resources={"jetson": 1}).remote(profile, torch.zeros(1, 1, 8, 8), None)
    with pytest.raises(StudyFailed, match="did not start within 2 s"):
        _bench_node(bench, profile)
    ray.kill(bench)
