"""One trial, called directly: no Ray, no MLflow, no Hydra."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from autoprune.data import load_data
from autoprune.errors import TrialFailed
from autoprune.hardware import MeasuredLatency, PredictedLatency
from autoprune.pruning import Decision, Policy, PruneSettings, find_groups, model_stats
from autoprune.search.objective import TrialSettings, example_input, run_trial
from autoprune.training import TrainSpec


@pytest.fixture(scope="module")
def setup():
    from tests.conftest import make_settings, trained_resnet

    settings = make_settings("hardware=jetson")
    data = load_data(settings.data)
    model = trained_resnet(data, width=16, epochs=2, lr=0.1)
    x = example_input(data)
    groups = [g for g in find_groups(model, x) if g.kind == "conv"]
    return settings, data, model, groups


def trial_settings(base_latency: float, model, data, **changes) -> TrialSettings:
    values = dict(prune=PruneSettings(alignment=8), finetune=TrainSpec(epochs=1, lr=0.02),
                  bn_batches=5, base_latency_ms=base_latency)
    values.update(changes)
    return TrialSettings(**values)


def test_channel_trial_is_smaller_faster_and_still_accurate(setup):
    settings, data, model, groups = setup
    latency = PredictedLatency(settings.hardware, data.input_shape)
    base_latency = latency.latency(model).median_ms
    policy = Policy.uniform([g.id for g in groups], "channel", 0.5)
    result = run_trial(policy, model, groups, data, trial_settings(base_latency, model, data),
                       latency)
    metrics = result.metrics()
    assert metrics["params"] < model_stats(model, example_input(data))["params"] / 2
    assert metrics["speedup"] > 1.0
    assert result.latency.source == "predicted"
    assert 0.7 < metrics["accuracy"] <= 1.0  # chance is 0.1
    assert metrics["nonzero_params"] <= metrics["params"]
    assert metrics["sparsity"] == pytest.approx(
        1 - metrics["nonzero_params"] / metrics["params"])


def test_trial_leaves_the_base_model_untouched(setup):
    settings, data, model, groups = setup
    before = {k: v.clone() for k, v in model.state_dict().items()}
    latency = PredictedLatency(settings.hardware, data.input_shape)
    run_trial(Policy.uniform([g.id for g in groups], "unstructured", 0.5), model, groups, data,
              trial_settings(1.0, model, data), latency)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_unstructured_trial_keeps_its_zeros_through_fine_tuning(setup):
    settings, data, model, groups = setup
    latency = PredictedLatency(settings.hardware, data.input_shape)
    result = run_trial(Policy.uniform([g.id for g in groups], "unstructured", 0.6), model,
                       groups, data, trial_settings(1.0, model, data), latency)
    prunable = [m.weight for m in result.model.modules()
                if isinstance(m, torch.nn.Conv2d)]
    zeros = sum(int((w == 0).sum()) for w in prunable)
    total = sum(w.numel() for w in prunable)
    assert zeros / total == pytest.approx(0.6, abs=0.01)


def test_measured_trial_reports_measured_latency(setup, settings_for):
    _, data, model, groups = setup
    profile = settings_for("hardware=cpu").hardware
    profile = dataclasses.replace(profile, measure=dataclasses.replace(
        profile.measure, warmup=2, repeats=3, number=3))
    result = run_trial(Policy.uniform([g.id for g in groups], "channel", 0.25), model, groups,
                       data, trial_settings(1.0, model, data),
                       MeasuredLatency(profile, data.input_shape))
    assert result.latency.source == "measured"
    assert result.latency.median_ms > 0


def test_diverging_fine_tune_fails_the_trial(setup):
    settings, data, model, groups = setup
    latency = PredictedLatency(settings.hardware, data.input_shape)
    bad = trial_settings(1.0, model, data, finetune=TrainSpec(epochs=1, lr=1e30))
    with pytest.raises(TrialFailed, match="diverged|NaN|infinite"):
        run_trial(Policy.uniform([g.id for g in groups], "channel", 0.25), model, groups,
                  data, bad, latency)


@pytest.mark.parametrize("schedule", ["iterative", "agp"])
def test_iterative_schedule_reaches_the_one_shot_architecture(setup, schedule):
    settings, data, model, groups = setup
    latency = PredictedLatency(settings.hardware, data.input_shape)
    decisions = {g.id: Decision("channel" if i % 2 else "unstructured", 0.5)
                 for i, g in enumerate(groups)}
    oneshot = run_trial(Policy(decisions), model, groups, data,
                        trial_settings(1.0, model, data), latency)
    stepped = run_trial(Policy(decisions, schedule=schedule), model, groups, data,
                        trial_settings(1.0, model, data, schedule_steps=3), latency)
    shapes = {k: v.shape for k, v in oneshot.model.state_dict().items()}
    assert {k: v.shape for k, v in stepped.model.state_dict().items()} == shapes
    assert stepped.metrics()["nonzero_params"] == pytest.approx(
        oneshot.metrics()["nonzero_params"], rel=0.01)
    assert 0.7 < stepped.accuracy <= 1.0


def test_distillation_changes_fine_tuning(setup):
    settings, data, model, groups = setup
    latency = PredictedLatency(settings.hardware, data.input_shape)
    policy = Policy.uniform([g.id for g in groups], "channel", 0.5)
    plain = run_trial(policy, model, groups, data, trial_settings(1.0, model, data), latency)
    spec = TrainSpec(epochs=1, lr=0.02, distill_alpha=0.7)
    taught = run_trial(policy, model, groups, data,
                       trial_settings(1.0, model, data, finetune=spec), latency)
    a, b = plain.model.state_dict(), taught.model.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert 0.7 < taught.accuracy <= 1.0


def test_int8_trial_is_quantised_timed_and_smaller(setup, settings_for):
    from autoprune.pruning.quantize import is_quantized

    _, data, model, groups = setup
    profile = settings_for("hardware=cpu").hardware
    profile = dataclasses.replace(profile, measure=dataclasses.replace(
        profile.measure, warmup=2, repeats=3, number=3))
    policy = Policy(Policy.uniform([g.id for g in groups], "channel", 0.25).decisions,
                    quantize="int8")
    result = run_trial(policy, model, groups, data, trial_settings(1.0, model, data),
                       MeasuredLatency(profile, data.input_shape))
    float_stats = model_stats(result.model, example_input(data))
    assert is_quantized(result.deployed)
    assert not is_quantized(result.model)
    assert result.metrics()["size_mb"] < float_stats["size_mb"] / 2
    assert 0.7 < result.accuracy <= 1.0
