"""The bench and core gate actors: a measurement never overlaps training."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
import ray
import torch

from autoprune.hardware.bench import Bench, BenchLatency, CoreGate, TrainingGuard


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=100 * 1024 * 1024)
    yield
    ray.shutdown()


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
    time.sleep(0.2)  # training "a" holds the gate
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
    gate = CoreGate.remote()
    bench = Bench.remote(profile, (1, 8, 8), gate)
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
    bench = Bench.remote(profile, (1, 8, 8), None)
    backend = BenchLatency(bench)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3))
    first = backend.latency(model)
    second = backend.latency(model, refresh=True)
    assert ray.get(bench.stats.remote())["measured"] == 2
    assert second.median_ms <= first.median_ms
