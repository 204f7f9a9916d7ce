"""Policies are plain data: they survive YAML and flat-parameter round trips unchanged."""

from __future__ import annotations

import math

import pytest
import yaml

from autoprune.errors import UserError
from autoprune.pruning import Decision, Policy


def _policy() -> Policy:
    return Policy({
        "stem.0": Decision("channel", 0.25),
        "layer1.0.conv1": Decision("unstructured", 0.5),
        "layer2.0.conv1": Decision("channel", 0.0),
    })


def test_yaml_round_trip_keeps_every_decision_and_the_order() -> None:
    policy = _policy()
    again = Policy.from_yaml(policy.to_yaml())
    assert again == policy
    assert list(again.decisions) == list(policy.decisions)


def test_yaml_is_a_readable_groups_mapping() -> None:
    data = yaml.safe_load(_policy().to_yaml())
    assert data["groups"]["stem.0"] == {"strategy": "channel", "ratio": 0.25}


def test_params_round_trip() -> None:
    policy = _policy()
    params = policy.to_params()
    assert params["stem.0.ratio"] == 0.25
    assert params["stem.0.strategy"] == "channel"
    assert Policy.from_params(params) == policy


def test_params_ratio_without_strategy_is_a_user_error() -> None:
    with pytest.raises(UserError, match="stem.0.strategy"):
        Policy.from_params({"stem.0.ratio": 0.5})


@pytest.mark.parametrize("ratio", [-0.1, 1.01, 1.5, math.nan])
def test_decision_rejects_ratio_outside_unit_interval(ratio: float) -> None:
    with pytest.raises(UserError, match="outside"):
        Decision("channel", ratio)


@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.999, 1.0])
def test_decision_accepts_ratio_in_unit_interval(ratio: float) -> None:
    assert Decision("channel", ratio).ratio == ratio


@pytest.mark.parametrize("text", ["", "groups: 3", "[1, 2]", "other: {}"])
def test_yaml_without_groups_mapping_is_a_user_error(text: str) -> None:
    with pytest.raises(UserError, match="groups"):
        Policy.from_yaml(text)


def test_yaml_entry_missing_ratio_is_a_user_error() -> None:
    with pytest.raises(UserError, match="stem.0"):
        Policy.from_yaml("groups:\n  stem.0: {strategy: channel}\n")


def test_yaml_entry_with_bad_ratio_is_a_user_error() -> None:
    with pytest.raises(UserError):
        Policy.from_yaml("groups:\n  stem.0: {strategy: channel, ratio: 1.2}\n")


def test_yaml_tags_that_build_objects_are_refused_not_run(tmp_path) -> None:
    marker = tmp_path / "ran"
    text = ("groups: !!python/object/apply:pathlib.Path.touch "
            f"[!!python/object/apply:pathlib.Path [{str(marker)!r}]]\n")
    with pytest.raises(UserError, match="the policy is not plain YAML data"):
        Policy.from_yaml(text)
    assert not marker.exists()


def test_uniform_names_every_group_once() -> None:
    policy = Policy.uniform(["a", "b"], "channel", 0.3)
    assert policy.decisions == {"a": Decision("channel", 0.3), "b": Decision("channel", 0.3)}


def test_summary_counts_active_decisions() -> None:
    assert Policy.uniform(["a", "b"], "channel", 0.0).summary() == "unpruned"
    summary = _policy().summary()
    assert "channel 1/3 @0.25" in summary
    assert "unstructured 1/3 @0.50" in summary


def test_global_choices_round_trip_through_yaml_and_params() -> None:
    policy = Policy(_policy().decisions, schedule="agp", quantize="int8")
    assert Policy.from_yaml(policy.to_yaml()) == policy
    assert Policy.from_params(policy.to_params()) == policy
    assert policy.used() == ("channel", "unstructured", "agp", "int8")
    assert "agp" in policy.summary() and "int8" in policy.summary()


def test_fixed_ratio_strategies_need_no_ratio_and_none_means_unpruned() -> None:
    policy = Policy.from_params({"a.strategy": "nm", "b.strategy": "layer",
                                 "c.strategy": "none"})
    assert policy.decisions == {"a": Decision("nm", 0.5), "b": Decision("layer", 1.0)}
