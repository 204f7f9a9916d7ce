"""Prunable groups: the classifier is never searchable, coupled layers share a group."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autoprune.errors import UserError
from autoprune.models.resnet import ResNet
from autoprune.pruning import find_groups

EXAMPLE = torch.zeros(1, 1, 16, 16)


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    return ResNet(width=16, blocks_per_stage=1)


def _members(groups) -> list[str]:  # noqa: ANN001
    return [name for g in groups for name in g.layers]


def test_classifier_is_excluded(model: nn.Module) -> None:
    groups = find_groups(model, EXAMPLE)
    assert groups, "a ResNet has prunable convolutions"
    assert all(g.id != "fc" for g in groups)
    assert "fc" not in _members(groups)


def test_every_other_conv_belongs_to_exactly_one_channel_group(model: nn.Module) -> None:
    groups = [g for g in find_groups(model, EXAMPLE) if g.kind == "conv"]
    convs = {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    members = _members(groups)
    assert sorted(members) == sorted(convs)
    assert len(members) == len(set(members))


def test_residual_partners_share_one_group(model: nn.Module) -> None:
    groups = {g.id: g for g in find_groups(model, EXAMPLE)}
    # Identity shortcut: the stem's output is added to layer1's output.
    assert {"stem.0", "layer1.0.conv2"} <= set(groups["stem.0"].layers)
    # Projection shortcut: the 1x1 conv and conv2 feed the same addition.
    assert {"layer2.0.shortcut.0", "layer2.0.conv2"} <= set(groups["layer2.0.shortcut.0"].layers)
    assert any(len(g.layers) > 1 for g in groups.values())


def test_group_describes_its_root_layer(model: nn.Module) -> None:
    for group in find_groups(model, EXAMPLE):
        root = model.get_submodule(group.id)
        if group.kind == "block":
            assert type(root).__name__ == "BasicBlock"
            assert group.channels == 1
            assert {f"{group.id}.conv1", f"{group.id}.conv2"} <= set(group.layers)
            continue
        assert group.kind == "conv"
        assert group.channels == root.out_channels
        assert group.id in group.layers


def test_block_groups_are_the_identity_shortcut_blocks(model: nn.Module) -> None:
    blocks = [g.id for g in find_groups(model, EXAMPLE) if g.kind == "block"]
    # layer2.0 and layer3.0 change shape through a projection shortcut: not removable.
    assert blocks == ["layer1.0"]


def test_attention_modules_are_head_groups_and_their_projections_are_not_channels() -> None:
    from autoprune.models.vit import ViT
    from tests.fixtures.hybrid import HybridNet

    vit_groups = {g.id: g for g in find_groups(ViT(depth=2), EXAMPLE)}
    assert vit_groups["blocks.0.attn"].kind == "attention"
    assert vit_groups["blocks.0.attn"].channels == 4
    assert "blocks.0.attn.qkv" not in vit_groups  # heads are removed whole, not channels
    assert {"blocks.0", "blocks.1"} <= {g for g, v in vit_groups.items() if v.kind == "block"}
    hybrid = {g.id: g.kind for g in find_groups(HybridNet(), EXAMPLE)}
    assert hybrid["attn"] == "attention"
    assert hybrid["block1"] == hybrid["block2"] == "block"
    assert "block1.se" not in hybrid  # a gate is not a residual block


def test_groups_follow_module_order(model: nn.Module) -> None:
    position = {name: i for i, (name, _) in enumerate(model.named_modules())}
    ids = [g.id for g in find_groups(model, EXAMPLE)]
    assert ids == sorted(ids, key=position.__getitem__)


def test_ignored_layer_removes_its_whole_group(model: nn.Module) -> None:
    groups = find_groups(model, EXAMPLE, ignored=["layer1.0.conv2"])
    assert "layer1.0.conv2" not in _members(groups)
    assert "stem.0" not in [g.id for g in groups]
    assert "layer1.0.conv1" in [g.id for g in groups]


def test_ignoring_a_missing_module_is_a_user_error(model: nn.Module) -> None:
    with pytest.raises(UserError, match="no_such_layer"):
        find_groups(model, EXAMPLE, ignored=["no_such_layer"])


def test_linear_layers_before_the_classifier_are_prunable() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3))
    groups = find_groups(model, torch.zeros(1, 16))
    assert [(g.id, g.kind, g.channels) for g in groups] == [("1", "linear", 12)]


def test_a_model_torch_pruning_cannot_trace_keeps_its_heads_and_blocks(monkeypatch):
    from autoprune.models.vit import ViT
    from autoprune.pruning import groups as grouping

    torch.manual_seed(0)
    model = ViT(dim=32, depth=2, num_heads=4)
    x = torch.randn(1, 1, 16, 16)
    expected = {g.id for g in find_groups(model, x) if g.kind in ("attention", "block")}

    def untraceable(*_args, **_kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(grouping, "dependency_graph", untraceable)
    with pytest.warns(grouping.GroupingWarning, match="ZeroDivisionError: division by zero"):
        groups = find_groups(model, x)
    assert expected and {g.id for g in groups} == expected
