"""Typed settings: every bundled choice composes, bad values are refused with a clear message."""

from __future__ import annotations

import re

import pytest

from autoprune.errors import UserError
from autoprune.paths import group_choices

NAMED_BY = {"hardware": lambda s: s.hardware.name, "search": lambda s: s.search.sampler,
            "data": lambda s: s.data.name, "task": lambda s: s.task.name}


@pytest.mark.parametrize("group", ["hardware", "search", "data", "pruning", "finetune",
                                   "tracking", "ray", "task", "model"])
def test_every_bundled_choice_composes_into_typed_settings(settings_for, group):
    # Choices that need the user's file or factory, or data of their own kind:
    required = {"data=arrays": ["data.path=data.npz"],
                "data=dataset": ["data.train._target_=tests.fixtures.datasets.Stripes"],
                "data=text": ["model=gpt"], "model=gpt": ["data=text"],
                "model=custom": ["model._target_=examples.regression.Net"]}
    for choice in group_choices(group):
        override = f"{group}={choice}"
        settings = settings_for(override, *required.get(override, []))
        if group in NAMED_BY:
            assert NAMED_BY[group](settings) == choice
        assert settings.raw[group] is not None


def test_profiles_state_what_the_latency_model_needs(settings_for):
    jetson = settings_for("hardware=jetson").hardware
    assert jetson.mode == "auto" and jetson.ray_resource == "jetson"
    assert jetson.roofline is not None and jetson.precision in jetson.roofline.peak_tflops
    cpu = settings_for("hardware=cpu").hardware
    assert cpu.mode == "measure" and cpu.threads >= 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["hardware.mode=sometimes"], "unknown hardware.mode 'sometimes'"),
        (["hardware.measure_policy=some"],
         "unknown hardware.measure_policy 'some'; choose from all, adaptive"),
        (["hardware=cpu", "hardware.measure_policy=adaptive", "hardware.roofline=null"],
         "hardware.measure_policy=adaptive learns from the latency model, and hardware=cpu "
         "has none"),
        (["hardware.precision=fp8"], "unknown hardware.precision 'fp8'"),
        (["hardware.backend=vulkan"], "unknown hardware.backend 'vulkan'"),
        (["hardware=cpu", "hardware.backend=tensorrt"],
         "hardware.backend=tensorrt runs on an NVIDIA GPU; hardware.device is cpu"),
        (["hardware=cpu", "hardware.backend=onnxruntime", "pruning=all"],
         "int8, which is measured with the torch backend"),
        (["pruning.strategies=[dynamic]", "pruning.quantize=[int8]"],
         "pruning.strategies has dynamic, which int8 cannot quantise"),
        (["hardware.measure.warmup_s=-1"], "warmup_s >= 0"),
        (["hardware=cpu", "hardware.mode=predict", "hardware.roofline=null"],
         "has no latency model"),
        (["search.concurrency=0"], "search.concurrency must be at least 1"),
        (["search.sampler=cmaes"], "unknown search.sampler 'cmaes'"),
        (["search.seed_ratios=[1.5]"], "search.seed_ratios must lie in [0, 1)"),
        (["search.max_latency_ms=0"], "search.max_latency_ms must be positive"),
        (["search=amc", "hardware=cpu", "hardware.roofline=null"],
         "search=amc needs a latency model for its action wall"),
        (["search.min_accuracy=1.2"], "search.min_accuracy must lie in [0, 1]"),
        (["search.min_accuracy=0.9", "search.max_accuracy_drop=0.01"],
         "set one limit on the metric, not min_accuracy and max_accuracy_drop"),
        (["search.max_drop=0.1", "search.max_relative_drop=0.05"],
         "set one limit on the metric, not max_drop and max_relative_drop"),
        (["search.max_relative_drop=-0.05"], "search.max_relative_drop must be at least 0"),
        (["finetune.optimizer=lamb"], "unknown finetune.optimizer 'lamb'"),
        (["finetune.schedule=step"], "unknown finetune.schedule 'step'"),
        (["finetune.precision=int4"], "unknown finetune.precision 'int4'"),
        (["finetune.device=tpu"], "unknown finetune.device 'tpu'"),
        (["finetune.warmup=1.5"], "finetune.warmup must be a fraction"),
        (["finetune.eval_batches=0"], "finetune.eval_batches must be at least 1"),
        (["ray.gpus_per_trial=1.5"], "ray.gpus_per_trial must be a fraction of one GPU"),
        (["ray.gpus_per_trial=-1"], "ray.gpus_per_trial must be at least 0"),
        (["model.pretrained=maybe"], "model.pretrained must be true or false"),
        (["task._target_=examples.regression.Missing"], "has no callable 'Missing'"),
        (["task=language_model", "data.context=1"], "data.context must be at least 2"),
        (["search.sensitivity_ratios=[]"], "search.sensitivity_ratios must be a non-empty"),
        (["search.early_stop_margin=-0.1"], "search.early_stop_margin must be at least 0"),
        (["pruning.importance=entropy"], "unknown pruning.importance 'entropy'"),
        (["pruning.strategies=[channel,dropout]"],
         "unknown pruning.strategies value 'dropout'"),
        (["pruning.strategies=[]"], "pruning.strategies is empty"),
        (["pruning.schedules=[oneshot,cosine]"], "unknown pruning.schedules value 'cosine'"),
        (["pruning.quantize=[int4]"], "unknown pruning.quantize value 'int4'"),
        (["pruning.schedule_steps=1"], "pruning.schedule_steps must be at least 2"),
        (["finetune.distill_alpha=1.5"], "finetune.distill_alpha must be in [0, 1]"),
        (["data.val_fraction=0.9"], "data.val_fraction and data.test_fraction"),
    ],
)
def test_bad_values_are_user_errors(settings_for, overrides, message):
    with pytest.raises(UserError, match=re.escape(message)):
        settings_for(*overrides)


def test_model_kwargs_exclude_reserved_keys(settings_for):
    model = settings_for().model
    assert model.target == "autoprune.models.resnet.ResNet"
    assert model.kwargs == {"num_classes": 10, "in_channels": 1, "width": 32,
                            "blocks_per_stage": 2}


def test_pruning_all_enables_every_registered_choice(settings_for):
    from autoprune.pruning import STRATEGIES
    from autoprune.pruning.criteria import CRITERIA
    from autoprune.pruning.quantize import QUANTIZATIONS
    from autoprune.pruning.schedule import SCHEDULES

    pruning = settings_for("pruning=all").pruning
    assert set(pruning.strategies) == set(STRATEGIES)
    assert set(pruning.schedules) == set(SCHEDULES)
    assert set(pruning.quantize) == set(QUANTIZATIONS)
    for criterion in CRITERIA:
        assert settings_for(f"pruning.importance={criterion}").pruning.importance == criterion


def test_every_gpu_profile_states_its_latency_model(settings_for):
    from autoprune.paths import group_choices

    for name in group_choices("hardware"):
        profile = settings_for(f"hardware={name}").hardware
        if profile.device == "cpu":
            continue
        assert profile.roofline is not None, name
        peaks = profile.roofline.peak_tflops
        # bf16 where the GPU has it (Ampere and later), at the fp16 rate.
        assert set(peaks) - {"bf16"} == {"fp32", "fp16", "int8"}, name
        assert 0 < peaks["fp32"] <= peaks["fp16"] <= peaks["int8"], name
        assert peaks.get("bf16", peaks["fp16"]) == peaks["fp16"], name
    with pytest.raises(UserError, match="peak_tflops has no figure for bf16"):
        settings_for("hardware=jetson_nano", "hardware.precision=bf16")  # Maxwell: no bf16
        assert profile.roofline.bandwidth_gbps > 0 and profile.measure.warmup_s >= 1.0, name


def test_the_language_model_task_brings_its_own_defaults(settings_for):
    settings = settings_for("task=language_model")
    assert (settings.model.name, settings.data.name) == ("gpt", "text")
    assert settings.finetune.optimizer == "adamw" and settings.finetune.schedule == "cosine"
    assert set(settings.pruning.strategies) == {"head", "neuron", "layer"}
    assert settings.model.kwargs["context"] == settings.data.context
    # Each default can still be chosen on the command line.
    assert settings_for("task=language_model", "finetune=default").finetune.optimizer == "sgd"
