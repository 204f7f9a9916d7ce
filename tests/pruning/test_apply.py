"""Applying a policy: the copy really shrinks, the original stays, results repeat bit for bit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autoprune.errors import UserError
from autoprune.models.resnet import ResNet
from autoprune.pruning import (
    Decision,
    Policy,
    PruneSettings,
    apply_policy,
    find_groups,
    model_stats,
)
from autoprune.pruning.strategies import get_strategy, kept_channels

ALIGNMENT = 8
EXAMPLE = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))


def _resnet() -> nn.Module:
    torch.manual_seed(0)
    return ResNet(width=16, blocks_per_stage=1).eval()


@pytest.fixture
def model() -> nn.Module:
    return _resnet()


@pytest.fixture(scope="module")
def groups() -> list:
    # Channel groups only: these tests are about channel and mask strategies.
    return [g for g in find_groups(_resnet(), EXAMPLE) if g.kind == "conv"]


def _convs(model: nn.Module) -> dict[str, nn.Conv2d]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def _same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]) for k in sa
    )


def _mixed(groups: list) -> Policy:
    return Policy({g.id: Decision("channel" if i % 2 else "unstructured", 0.4)
                   for i, g in enumerate(groups)})


# --- channel pruning -------------------------------------------------------------------------

def test_channel_policy_shrinks_the_model(model: nn.Module, groups: list) -> None:
    policy = Policy.uniform([g.id for g in groups], "channel", 0.5)
    pruned = apply_policy(model, policy, groups, EXAMPLE, PruneSettings(ALIGNMENT)).model
    before, after = model_stats(model, EXAMPLE), model_stats(pruned, EXAMPLE)
    assert after["params"] < before["params"]
    assert after["macs"] < before["macs"]
    assert after["size_mb"] < before["size_mb"]
    original = _convs(model)
    for name, conv in _convs(pruned).items():
        assert conv.weight.shape[0] < original[name].weight.shape[0]
        assert conv.weight.numel() < original[name].weight.numel()


def test_channel_policy_keeps_the_output_shape(model: nn.Module, groups: list) -> None:
    policy = Policy.uniform([g.id for g in groups], "channel", 0.6)
    pruned = apply_policy(model, policy, groups, EXAMPLE, PruneSettings(ALIGNMENT)).model
    batch = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        assert pruned(batch).shape == model(batch).shape == (3, 10)


@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_kept_channels_are_aligned(model: nn.Module, groups: list, ratio: float) -> None:
    policy = Policy.uniform([g.id for g in groups], "channel", ratio)
    pruned = apply_policy(model, policy, groups, EXAMPLE, PruneSettings(ALIGNMENT)).model
    for group in groups:
        expected = kept_channels(group.channels, ratio, ALIGNMENT)
        assert expected % ALIGNMENT == 0
        for layer in group.layers:
            assert pruned.get_submodule(layer).out_channels == expected


@pytest.mark.parametrize("channels", [8, 16, 24, 64, 128])
@pytest.mark.parametrize("alignment", [1, 4, 8])
@pytest.mark.parametrize("ratio", [0.01, 0.2, 0.5, 0.74, 0.99])
def test_kept_channels_rounds_to_nearest_aligned_count(
    channels: int, alignment: int, ratio: float
) -> None:
    keep = kept_channels(channels, ratio, alignment)
    assert keep % alignment == 0
    assert alignment <= keep <= channels
    if alignment < keep < channels:
        assert abs(keep - channels * (1 - ratio)) <= alignment / 2


def test_kept_channels_never_prunes_below_one_step_or_grows() -> None:
    assert kept_channels(64, 0.0, 8) == 64
    assert kept_channels(6, 0.9, 8) == 6  # fewer channels than one step: left alone
    assert kept_channels(64, 0.99, 8) == 8
    # Rounding up past an unaligned count means "remove nothing", never "add channels".
    assert kept_channels(23, 0.01, 8) == 23


def test_l2_importance_also_prunes(model: nn.Module, groups: list) -> None:
    policy = Policy.uniform([g.id for g in groups], "channel", 0.5)
    pruned = apply_policy(model, policy, groups, EXAMPLE, PruneSettings(ALIGNMENT, "l2")).model
    assert model_stats(pruned, EXAMPLE)["params"] < model_stats(model, EXAMPLE)["params"]


# --- determinism and isolation ----------------------------------------------------------------

@pytest.mark.parametrize("strategy", ["channel", "unstructured", "mixed"])
def test_same_policy_gives_identical_models(
    model: nn.Module, groups: list, strategy: str
) -> None:
    policy = (_mixed(groups) if strategy == "mixed"
              else Policy.uniform([g.id for g in groups], strategy, 0.4))
    first = apply_policy(model, policy, groups, EXAMPLE, PruneSettings(ALIGNMENT))
    second = apply_policy(model, policy, groups, EXAMPLE, PruneSettings(ALIGNMENT))
    assert str(first.model) == str(second.model)
    assert _same_state(first.model, second.model)
    assert first.masks.keys() == second.masks.keys()
    assert all(torch.equal(first.masks[k], second.masks[k]) for k in first.masks)


def test_base_model_is_not_modified(model: nn.Module, groups: list) -> None:
    reference = ResNet(width=16, blocks_per_stage=1)
    reference.load_state_dict(model.state_dict())
    with torch.no_grad():
        expected = model(EXAMPLE)
    apply_policy(model, _mixed(groups), groups, EXAMPLE, PruneSettings(ALIGNMENT))
    assert _same_state(model, reference)
    assert str(model) == str(reference.eval())
    with torch.no_grad():
        assert torch.equal(model(EXAMPLE), expected)


def test_ratio_zero_leaves_the_model_unchanged(model: nn.Module, groups: list) -> None:
    for strategy in ("channel", "unstructured"):
        policy = Policy.uniform([g.id for g in groups], strategy, 0.0)
        result = apply_policy(model, policy, groups, EXAMPLE, PruneSettings(ALIGNMENT))
        assert _same_state(result.model, model)
        assert result.masks == {}


def test_empty_policy_leaves_the_model_unchanged(model: nn.Module, groups: list) -> None:
    result = apply_policy(model, Policy({}), groups, EXAMPLE, PruneSettings(ALIGNMENT))
    assert _same_state(result.model, model)


# --- unstructured and mixed -------------------------------------------------------------------

@pytest.mark.parametrize("ratio", [0.13, 0.5, 0.9])
def test_unstructured_zeroes_exact_fraction_of_each_layer(
    model: nn.Module, groups: list, ratio: float
) -> None:
    policy = Policy.uniform([g.id for g in groups], "unstructured", ratio)
    result = apply_policy(model, policy, groups, EXAMPLE, PruneSettings(ALIGNMENT))
    layers = [layer for g in groups for layer in g.layers]
    assert sorted(result.masks) == sorted(f"{layer}.weight" for layer in layers)
    for layer in layers:
        weight = result.model.get_submodule(layer).weight
        mask = result.masks[f"{layer}.weight"]
        zeros = int((weight == 0).sum())
        assert zeros == round(ratio * weight.numel())
        assert zeros / weight.numel() == round(ratio * weight.numel()) / weight.numel()
        assert mask.shape == weight.shape
        assert torch.equal(weight == 0, mask == 0)
        assert weight.shape == model.get_submodule(layer).weight.shape  # no shape change


def test_unstructured_drops_the_smallest_weights(model: nn.Module, groups: list) -> None:
    group = groups[0]
    result = apply_policy(model, Policy({group.id: Decision("unstructured", 0.5)}), groups,
                          EXAMPLE, PruneSettings(ALIGNMENT))
    for layer in group.layers:
        original = model.get_submodule(layer).weight.detach().abs()
        mask = result.masks[f"{layer}.weight"].bool()
        assert original[~mask].max() <= original[mask].min()


def test_mixed_policy_masks_match_final_shapes(model: nn.Module, groups: list) -> None:
    policy = _mixed(groups)
    result = apply_policy(model, policy, groups, EXAMPLE, PruneSettings(ALIGNMENT))
    assert result.masks
    for key, mask in result.masks.items():
        weight = result.model.get_parameter(key)
        assert mask.shape == weight.shape
        assert torch.equal(weight == 0, mask == 0)
    for group in groups:
        conv = result.model.get_submodule(group.id)
        if policy.decisions[group.id].strategy == "channel":
            assert conv.out_channels == kept_channels(group.channels, 0.4, ALIGNMENT)
        else:
            assert conv.out_channels == group.channels
    with torch.no_grad():
        assert result.model(EXAMPLE).shape == (1, 10)
    stats = model_stats(result.model, EXAMPLE)
    assert stats["nonzero_params"] < stats["params"] < model_stats(model, EXAMPLE)["params"]


# --- bad input --------------------------------------------------------------------------------

def test_unknown_group_is_a_user_error(model: nn.Module, groups: list) -> None:
    policy = Policy({"no.such.layer": Decision("channel", 0.5)})
    with pytest.raises(UserError, match="no.such.layer"):
        apply_policy(model, policy, groups, EXAMPLE, PruneSettings(ALIGNMENT))


def test_unknown_strategy_is_a_user_error(model: nn.Module, groups: list) -> None:
    policy = Policy({groups[0].id: Decision("lottery", 0.5)})
    with pytest.raises(UserError, match="lottery"):
        apply_policy(model, policy, groups, EXAMPLE, PruneSettings(ALIGNMENT))
    with pytest.raises(UserError, match="channel"):
        get_strategy("lottery")


def test_strategy_on_a_group_kind_it_cannot_prune_is_a_user_error(
    model: nn.Module, groups: list
) -> None:
    policy = Policy({groups[0].id: Decision("head", 0.5)})
    with pytest.raises(UserError, match="cannot prune conv group"):
        apply_policy(model, policy, groups, EXAMPLE, PruneSettings(ALIGNMENT))


def test_ignoring_a_missing_module_is_a_user_error(model: nn.Module, groups: list) -> None:
    policy = Policy.uniform([g.id for g in groups], "channel", 0.5)
    with pytest.raises(UserError, match="ghost"):
        apply_policy(model, policy, groups, EXAMPLE,
                     PruneSettings(ALIGNMENT, ignored=("ghost",)))
