"""Every built-in model: builds from its config, prunes structurally and stays correct."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autoprune.models import build_model
from autoprune.paths import group_choices
from autoprune.pruning import (
    STRATEGIES,
    Decision,
    Policy,
    PruneSettings,
    apply_policy,
    check_groups,
    find_groups,
    model_stats,
)
from tests.conftest import make_settings

ZOO = [name for name in group_choices("model") if name != "custom"]


def test_zoo_holds_the_promised_families():
    assert {"resnet8", "resnet", "resnet20", "mobilenet", "vgg", "mlp", "vit"} <= set(ZOO)


def test_resnet_depths_differ_in_blocks():
    depths = {}
    for name in ("resnet8", "resnet", "resnet20"):
        model = build_model(make_settings(f"model={name}").model)
        depths[name] = 2 + 2 * sum(1 for m in model.modules()
                                   if type(m).__name__ == "BasicBlock")
    assert depths == {"resnet8": 8, "resnet": 14, "resnet20": 20}


LANGUAGE_MODELS = ("gpt",)


@pytest.fixture(scope="module", params=ZOO)
def zoo_model(request):
    """(name, model, two inputs, output shape on them) on the model's default data."""
    torch.manual_seed(0)
    if request.param in LANGUAGE_MODELS:
        settings = make_settings("task=language_model", f"model={request.param}")
        context = settings.data.context
        return (request.param, build_model(settings.model).eval(),
                torch.randint(0, 256, (2, context)), (2, context, 256))
    settings = make_settings(f"model={request.param}")
    model = build_model(settings.model).eval()
    x = torch.randn(2, settings.data.in_channels, settings.data.resolution,
                    settings.data.resolution)
    return request.param, model, x, (2, 10)


def test_builds_and_answers_the_default_data(zoo_model):
    _, model, x, shape = zoo_model
    assert model(x).shape == shape


def test_channel_policy_removes_work_and_keeps_aligned_shapes(zoo_model):
    _, model, x, shape = zoo_model
    groups = find_groups(model, x[:1])
    assert groups, "every zoo model has prunable groups"
    structured = {"conv": "channel", "linear": "neuron", "attention": "head"}
    policy = Policy({g.id: Decision(structured[g.kind], 0.5) for g in groups
                     if g.kind in structured})
    pruned = apply_policy(model, policy, groups, x[:1], PruneSettings(alignment=8)).model
    assert pruned(x).shape == shape
    before, after = model_stats(model, x[:1]), model_stats(pruned, x[:1])
    assert after["macs"] < 0.6 * before["macs"]
    assert after["params"] < before["params"]
    for original, small in zip(model.modules(), pruned.modules(), strict=True):
        if isinstance(small, (nn.Conv2d, nn.Linear)):
            out_before = getattr(original, "out_channels", getattr(original, "out_features", 0))
            out_after = getattr(small, "out_channels", getattr(small, "out_features", 0))
            assert out_after == out_before or out_after % 8 == 0


def test_same_policy_same_model_bit_for_bit(zoo_model):
    _, model, x, _ = zoo_model
    groups = find_groups(model, x[:1])
    # The strategies each group can take, as the search offers them (dynamic gating, for one,
    # takes only conv chains whose channels reach nothing else).
    usable, _ = check_groups(model, groups, list(STRATEGIES), x[:1], PruneSettings(alignment=8))
    decisions = {}
    for index, group in enumerate(g for g in groups if g.id in usable):
        options = usable[group.id]
        strategy = options[index % len(options)]
        decisions[group.id] = Decision(strategy, STRATEGIES[strategy].fixed_ratio or 0.4)
    policy = Policy(decisions)
    first = apply_policy(model, policy, groups, x[:1], PruneSettings(alignment=8))
    second = apply_policy(model, policy, groups, x[:1], PruneSettings(alignment=8))
    a, b = first.model.state_dict(), second.model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_classifier_is_never_a_group(zoo_model):
    _, model, x, _ = zoo_model
    last = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    groups = find_groups(model, x[:1])
    assert all(last not in g.layers for g in groups)
