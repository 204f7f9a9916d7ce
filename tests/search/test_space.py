"""The policy search space and the samplers that explore it."""

from __future__ import annotations

import pickle

import optuna
import pytest

from autoprune.errors import UserError
from autoprune.pruning import Policy
from autoprune.search.samplers import make_sampler
from autoprune.search.space import PolicySpace


def space(strategies=("channel", "unstructured"), **extra) -> PolicySpace:
    return PolicySpace({"a.conv": strategies, "b.conv": strategies}, 0.0, 0.72, 0.05, **extra)


def test_space_suggests_one_strategy_and_ratio_per_group_on_the_grid():
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        space()(trial)
        policy = Policy.from_params(trial.params)
        assert set(policy.decisions) == {"a.conv", "b.conv"}
        for decision in policy.decisions.values():
            assert decision.strategy in ("channel", "unstructured")
            assert 0.0 <= decision.ratio <= 0.70 + 1e-9
            assert abs(decision.ratio / 0.05 - round(decision.ratio / 0.05)) < 1e-6
        study.tell(trial, [0.5, 1.0])


def test_single_strategy_is_fixed_not_sampled():
    s = space(("channel",))
    study = optuna.create_study(directions=["maximize", "minimize"])
    trial = study.ask()
    s(trial)
    assert all(k.endswith(".ratio") for k in trial.params)
    policy = Policy.from_params(s.complete(trial.params))
    assert {d.strategy for d in policy.decisions.values()} == {"channel"}


def test_uniform_point_snaps_to_grid_and_prefers_channel_pruning():
    point = space().uniform_point(0.52)
    assert point["a.conv.ratio"] == pytest.approx(0.5)
    assert point["b.conv.strategy"] == "channel"


def test_ratio_is_sampled_only_for_strategies_that_take_one():
    s = PolicySpace({"conv": ("channel", "nm"), "block": ("layer",)}, 0.0, 0.5, 0.1,
                    schedules=("oneshot", "agp"), quantize=("none", "int8"))
    assert s.choices["block"] == ("layer", "none")  # a block may also be kept
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        s(trial)
        params = trial.params
        assert ("conv.ratio" in params) == (params["conv.strategy"] == "channel")
        assert "block.ratio" not in params
        policy = Policy.from_params(s.complete(params))
        assert policy.schedule in ("oneshot", "agp") and policy.quantize in ("none", "int8")
        if params["block.strategy"] == "layer":
            assert policy.decisions["block"].ratio == 1.0
        else:
            assert "block" not in policy.decisions
        if params["conv.strategy"] == "nm":
            assert policy.decisions["conv"].ratio == 0.5
        seen.add((params["conv.strategy"], params["block.strategy"], params["schedule"],
                  params["quantize"]))
        study.tell(trial, [0.5, 1.0])
    assert len(seen) > 8


def test_policies_with_dynamic_gating_are_never_quantised():
    s = space(("channel", "dynamic"), quantize=("none", "int8"))
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        s(trial)
        policy = Policy.from_params(s.complete(trial.params))
        gated = any(d.strategy == "dynamic" and d.ratio > 0 for d in policy.decisions.values())
        assert ("quantize" in trial.params) == (not gated)
        assert not (gated and policy.quantize == "int8")
        seen.add((gated, policy.quantize))
        study.tell(trial, [0.5, 1.0])
    assert seen == {(True, "none"), (False, "none"), (False, "int8")}


def test_space_is_picklable_for_ray():
    clone = pickle.loads(pickle.dumps(space()))
    assert clone.group_ids == ("a.conv", "b.conv")


def test_same_seed_same_policies(settings_for):
    search = settings_for("search=tpe").search

    def proposals(seed: int) -> list[dict]:
        study = optuna.create_study(directions=["maximize", "minimize"],
                                    sampler=make_sampler(search, seed))
        out = []
        for i in range(12):
            trial = study.ask()
            space()(trial)
            out.append(trial.params)
            study.tell(trial, [0.9 - 0.01 * i, 1.0 + 0.1 * (i % 3)])
        return out

    assert proposals(1) == proposals(1)
    assert proposals(1) != proposals(2)


@pytest.mark.parametrize("name", ["tpe", "nsga2", "random"])
def test_every_sampler_builds(settings_for, name):
    sampler = make_sampler(settings_for(f"search={name}").search, seed=0)
    assert isinstance(sampler, optuna.samplers.BaseSampler)


def test_sampler_options_that_do_not_fit_are_user_errors(settings_for):
    search = settings_for("search=random", "+search.options.bogus=1").search
    with pytest.raises(UserError, match="do not fit the random sampler"):
        make_sampler(search, seed=0)


def test_caps_narrow_a_groups_range_and_points_respect_them():
    s = space(("channel",), caps={"a.conv": 0.33, "unknown": 0.1})
    assert s.ratio_high("a.conv") == pytest.approx(0.30) and s.ratio_high("b.conv") == 0.70
    assert "unknown" not in s.caps
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        s(trial)
        assert trial.params["a.conv.ratio"] <= 0.30 + 1e-9
        study.tell(trial, [0.5, 1.0])
    assert s.uniform_point(0.6) == {"a.conv.ratio": 0.30, "b.conv.ratio": 0.6}
    assert s.point({"b.conv": 0.42}) == {"a.conv.ratio": 0.0, "b.conv.ratio": 0.4}


def test_decisions_inside_a_removed_block_do_not_make_another_model():
    space = PolicySpace({"blocks.0": ("layer",), "blocks.0.attn": ("head",),
                         "blocks.1": ("layer",), "blocks.1.attn": ("head",),
                         "blocks.10.attn": ("head",)}, 0.0, 0.75, 0.05)
    removed = space.uniform_point(0.25, depth=1)  # blocks.1 removed
    assert space.effective(removed) == space.effective({**removed, "blocks.1.attn.ratio": 0.5})
    # ... but a kept block's decisions do, and so does a block whose name only starts alike
    assert space.effective(removed) != space.effective({**removed, "blocks.0.attn.ratio": 0.5})
    assert space.effective(removed) != space.effective({**removed, "blocks.10.attn.ratio": 0.5})
    assert space.effective(space.uniform_point(0.25)) != space.effective(
        space.uniform_point(0.5))
