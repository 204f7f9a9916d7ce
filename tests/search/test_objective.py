"""One trial, called directly: no Ray, no MLflow, no Hydra."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from autoprune import specs
from autoprune.data import load_data
from autoprune.errors import TrialFailed
from autoprune.hardware import MeasuredLatency, PredictedLatency
from autoprune.pruning import Decision, Policy, PruneSettings, find_groups, model_stats
from autoprune.search.objective import TrialSettings, run_trial
from autoprune.training import TrainSpec


@pytest.fixture(scope="module")
def setup():
    from tests.conftest import classification, make_settings, trained_resnet

    settings = make_settings("hardware=jetson")
    data = load_data(settings.data)
    model = trained_resnet(data, width=16, epochs_=2, lr=0.1)
    work = classification(data)
    groups = [g for g in find_groups(model, work.example()) if g.kind == "conv"]
    return settings, work, model, groups


def trial_settings(base_latency: float, **changes) -> TrialSettings:
    values = dict(prune=PruneSettings(alignment=8), finetune=TrainSpec(steps=17, lr=0.02),
                  bn_batches=5, base_latency_ms=base_latency)
    values.update(changes)
    return TrialSettings(**values)


def _predicted(settings, work) -> PredictedLatency:  # noqa: ANN001
    return PredictedLatency(settings.hardware, work.example())


def test_channel_trial_is_smaller_faster_and_still_accurate(setup):
    settings, work, model, groups = setup
    latency = _predicted(settings, work)
    base_latency = latency.latency(model).median_ms
    policy = Policy.uniform([g.id for g in groups], "channel", 0.5)
    result = run_trial(policy, model, groups, work, trial_settings(base_latency), latency)
    metrics = result.report()
    assert metrics["params"] < model_stats(model, work.example())["params"] / 2
    assert metrics["speedup"] > 1.0
    assert result.latency.source == "predicted"
    assert metrics["accuracy"] > 0.7  # chance is 0.1
    assert metrics["cross_entropy"] > 0
    assert metrics["sparsity"] == pytest.approx(
        1 - metrics["nonzero_params"] / metrics["params"])


def test_progress_is_reported_every_step_and_checked_at_each_rung(setup):
    settings, work, model, groups = setup
    steps, checks = [], []
    run_trial(Policy.uniform([g.id for g in groups], "channel", 0.25), model, groups, work,
              trial_settings(1.0, finetune=TrainSpec(steps=10, lr=0.02), check_steps=(3, 5)),
              _predicted(settings, work), on_step=lambda s, n, loss: steps.append((s, n)),
              on_check=lambda s, m, lat: checks.append((s, m["accuracy"], lat.source)))
    assert steps == [(s, 10) for s in range(1, 11)]
    assert [c[0] for c in checks] == [3, 5] and {c[2] for c in checks} == {"predicted"}
    assert all(0.1 < c[1] <= 1.0 for c in checks)


def test_a_retried_trial_goes_on_from_its_checkpoint_with_the_pruned_model(setup):
    """Checkpoints hand out the pruned model, its masks and the optimiser's state; a trial
    resumed from one fine-tunes only the steps after it, keeps the architecture and ends as
    a whole trial does (measured, scored)."""
    import io

    import torch

    settings, work, model, groups = setup
    policy = Policy.uniform([g.id for g in groups], "unstructured", 0.5)
    spec = trial_settings(1.0, finetune=TrainSpec(steps=10, lr=0.02), check_steps=(3,),
                          checkpoint_steps=(3, 6, 10))
    saved = []

    def keep(checkpoint) -> None:  # noqa: ANN001 - written away at once, as a trial does
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        buffer.seek(0)
        saved.append(torch.load(buffer, weights_only=False))

    whole = run_trial(policy, model, groups, work, spec, _predicted(settings, work),
                      checkpoint=keep)
    assert [c.state.step for c in saved] == [3, 6]
    steps, checks = [], []
    again = run_trial(policy, model, groups, work, spec, _predicted(settings, work),
                      on_step=lambda s, n, loss: steps.append(s),
                      on_check=lambda s, m, lat: checks.append(s), resume=saved[-1])
    assert steps == [7, 8, 9, 10] and checks == []  # the rung at 3 was passed before
    assert again.report()["params"] == whole.report()["params"]
    assert again.latency.median_ms == whole.latency.median_ms  # same architecture
    # The masks came along: half of the pruned weights are still zero after fine-tuning.
    assert again.report()["sparsity"] == pytest.approx(whole.report()["sparsity"])
    assert again.metrics["accuracy"] > 0.5


def test_an_empty_policy_fine_tunes_the_unpruned_model(setup):
    settings, work, model, groups = setup
    result = run_trial(Policy({}), model, groups, work, trial_settings(1.0),
                       _predicted(settings, work))
    assert result.report()["params"] == model_stats(model, work.example())["params"]
    changed = [k for k, v in result.model.state_dict().items()
               if not torch.equal(v, model.state_dict()[k])]
    assert changed, "the weights were fine-tuned"


def test_trial_leaves_the_base_model_untouched(setup):
    settings, work, model, groups = setup
    before = {k: v.clone() for k, v in model.state_dict().items()}
    run_trial(Policy.uniform([g.id for g in groups], "unstructured", 0.5), model, groups, work,
              trial_settings(1.0), _predicted(settings, work))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_unstructured_trial_keeps_its_zeros_through_fine_tuning(setup):
    settings, work, model, groups = setup
    result = run_trial(Policy.uniform([g.id for g in groups], "unstructured", 0.6), model,
                       groups, work, trial_settings(1.0), _predicted(settings, work))
    prunable = [m.weight for m in result.model.modules() if isinstance(m, torch.nn.Conv2d)]
    zeros = sum(int((w == 0).sum()) for w in prunable)
    assert zeros / sum(w.numel() for w in prunable) == pytest.approx(0.6, abs=0.01)


def _quick_cpu(settings_for):  # noqa: ANN202
    profile = settings_for("hardware=cpu").hardware
    return dataclasses.replace(profile, measure=dataclasses.replace(
        profile.measure, warmup=2, repeats=3, number=3))


def test_measured_trial_reports_measured_latency(setup, settings_for):
    _, work, model, groups = setup
    result = run_trial(Policy.uniform([g.id for g in groups], "channel", 0.25), model, groups,
                       work, trial_settings(1.0),
                       MeasuredLatency(_quick_cpu(settings_for), work.example()))
    assert result.latency.source == "measured" and result.latency.median_ms > 0


def test_diverging_fine_tune_fails_the_trial(setup):
    settings, work, model, groups = setup
    bad = trial_settings(1.0, finetune=TrainSpec(steps=17, lr=1e30))
    with pytest.raises(TrialFailed, match="diverged|NaN|infinite"):
        run_trial(Policy.uniform([g.id for g in groups], "channel", 0.25), model, groups,
                  work, bad, _predicted(settings, work))


@pytest.mark.parametrize("schedule", ["iterative", "agp"])
def test_iterative_schedule_reaches_the_one_shot_architecture(setup, schedule):
    settings, work, model, groups = setup
    latency = _predicted(settings, work)
    decisions = {g.id: Decision("channel" if i % 2 else "unstructured", 0.5)
                 for i, g in enumerate(groups)}
    oneshot = run_trial(Policy(decisions), model, groups, work, trial_settings(1.0), latency)
    stepped = run_trial(Policy(decisions, schedule=schedule), model, groups, work,
                        trial_settings(1.0, schedule_steps=3), latency)
    shapes = {k: v.shape for k, v in oneshot.model.state_dict().items()}
    assert {k: v.shape for k, v in stepped.model.state_dict().items()} == shapes
    assert stepped.report()["nonzero_params"] == pytest.approx(
        oneshot.report()["nonzero_params"], rel=0.01)
    assert stepped.metrics["accuracy"] > 0.7


def test_distillation_changes_fine_tuning(setup):
    settings, work, model, groups = setup
    latency = _predicted(settings, work)
    policy = Policy.uniform([g.id for g in groups], "channel", 0.5)
    plain = run_trial(policy, model, groups, work, trial_settings(1.0), latency)
    spec = TrainSpec(steps=17, lr=0.02, distill_alpha=0.7)
    taught = run_trial(policy, model, groups, work, trial_settings(1.0, finetune=spec), latency)
    a, b = plain.model.state_dict(), taught.model.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert taught.metrics["accuracy"] > 0.7


def test_int8_trial_is_quantised_timed_and_smaller(setup, settings_for):
    from autoprune.pruning.quantize import is_quantized

    _, work, model, groups = setup
    policy = Policy(Policy.uniform([g.id for g in groups], "channel", 0.25).decisions,
                    quantize="int8")
    result = run_trial(policy, model, groups, work, trial_settings(1.0),
                       MeasuredLatency(_quick_cpu(settings_for), work.example()))
    float_stats = model_stats(result.model, work.example())
    assert is_quantized(result.deployed) and not is_quantized(result.model)
    assert result.report()["size_mb"] < float_stats["size_mb"] / 2
    assert result.metrics["accuracy"] > 0.7


def test_a_language_model_trial_reports_perplexity(settings_for):
    settings = settings_for("task=language_model", "model.dim=32", "model.depth=2",
                            "data.context=16", "finetune.eval_batches=2")
    work = specs.workload(settings)
    torch.manual_seed(0)
    from autoprune.models import build_model

    model = build_model(settings.model).eval()
    groups = find_groups(model, work.example())
    heads = [g.id for g in groups if g.kind == "attention"]
    result = run_trial(Policy.uniform(heads, "head", 0.5), model, groups, work,
                       trial_settings(1.0, finetune=specs.train_spec(settings, steps=5)),
                       _predicted(settings, work))
    metrics = result.report()
    assert {"perplexity", "nll", "bits_per_token"} <= set(metrics)
    assert 1.0 < metrics["perplexity"] < 400  # from an untrained 256-token model
    assert result.model.blocks[0].attn.num_heads == 2
