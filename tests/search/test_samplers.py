"""Every search method is an Optuna sampler built from `search=<name>`; constraints."""

from __future__ import annotations

import re

import optuna
import pytest

from autoprune.cli import compose
from autoprune.config import SAMPLERS, settings_from_dict
from autoprune.errors import UserError
from autoprune.pruning import Policy
from autoprune.search.refine import RefineSampler
from autoprune.search.samplers import (
    CONSTRAINTS_ATTR,
    Constraints,
    UniformSampler,
    grid,
    grid_points,
    make_sampler,
    resolve_constraints,
)
from autoprune.search.space import PolicySpace
from autoprune.tasks import Objective

SPACE = PolicySpace({"a.conv": ("channel", "lowrank"), "b.fc": ("neuron",),
                     "c.block": ("layer",)}, 0.0, 0.75, 0.05)

ACCURACY = Objective("accuracy", "maximize")


def search_config(name: str, *overrides: str):
    return settings_from_dict(compose("search", [f"search={name}", *overrides])).search


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_method_has_a_config_and_builds_a_seeded_sampler(name):
    cfg = search_config(name)
    assert cfg.sampler == name
    sampler = make_sampler(cfg, 0, space=SPACE)
    assert isinstance(sampler, optuna.samplers.BaseSampler)


def test_each_name_gives_the_sampler_it_promises():
    expected = {"tpe": optuna.samplers.TPESampler, "nsga2": optuna.samplers.NSGAIISampler,
                "nsga3": optuna.samplers.NSGAIIISampler, "gp": optuna.samplers.GPSampler,
                "random": optuna.samplers.RandomSampler, "uniform": UniformSampler,
                "refine": RefineSampler}
    for name, cls in expected.items():
        assert type(make_sampler(search_config(name), 0, space=SPACE)) is cls, name


def test_refine_grows_from_the_unpruned_model_only_when_it_meets_the_limits():
    cfg = search_config("refine")
    assert make_sampler(cfg, 0, space=SPACE, reference=0.9, base_latency_ms=2.0).unpruned
    slow = Constraints(max_latency_ms=1.0, objective=ACCURACY)
    assert make_sampler(cfg, 0, space=SPACE, constraints=slow, reference=0.9,
                        base_latency_ms=2.0).unpruned is None
    fits = Constraints(max_latency_ms=3.0, metric_bound=0.85, objective=ACCURACY)
    assert make_sampler(cfg, 0, space=SPACE, constraints=fits, reference=0.9,
                        base_latency_ms=2.0).unpruned == (SPACE.uniform_point(0.0), 0.9, 2.0)


def test_refine_judges_trials_by_the_tasks_metric_when_there_are_no_limits():
    # An empty Constraints is falsy; its objective (perplexity here) must still reach refine.
    perplexity = Objective("perplexity", "minimize")
    sampler = make_sampler(search_config("refine"), 0, space=SPACE,
                           constraints=Constraints(objective=perplexity), reference=4.0)
    assert sampler.objective == perplexity


def test_no_sampler_is_given_a_deprecated_constraints_func():
    # Constraints reach the samplers through Trial.set_constraint (see the runner's tests).
    limits = Constraints(max_latency_ms=1.0)
    for name in ("tpe", "nsga2", "nsga3", "gp"):
        sampler = make_sampler(search_config(name), 0, space=SPACE, constraints=limits)
        assert getattr(sampler, "_constraints_func", None) is None, name


@pytest.mark.parametrize("name", [n for n in SAMPLERS if n != "amc"])
def test_every_method_proposes_complete_policies_inside_the_space(name):
    # The search loop in miniature (the end-to-end tests run tpe, nsga2 and amc through Ray
    # Tune): ask over the policy space, tell both objectives and the constraint values.
    limits = Constraints(max_latency_ms=0.8)
    sampler = make_sampler(search_config(name), 0, space=SPACE, constraints=limits)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    for _ in range(6):
        trial = study.ask()
        SPACE(trial)
        params = SPACE.complete(trial.params)
        policy = Policy.from_params(params)
        kept = 1 - sum(d.ratio for d in policy.decisions.values()) / 3
        accuracy, latency = 0.5 + 0.4 * kept, kept
        trial.set_user_attr(CONSTRAINTS_ATTR, limits.values(accuracy, latency))
        study.tell(trial, [accuracy, latency])
        # Every strategy one its group allows, every free ratio on the space's grid (0 to
        # 0.75 by 0.05), a block removed whole.
        for gid, decision in policy.decisions.items():
            assert decision.strategy in (*SPACE.choices[gid], "none"), params
            if decision.strategy == "layer":
                assert decision.ratio == 1.0, params
                continue
            assert 0.0 <= decision.ratio <= 0.75 + 1e-9, params
            assert decision.ratio / 0.05 == pytest.approx(round(decision.ratio / 0.05)), params
        assert set(policy.decisions) <= {"a.conv", "b.fc", "c.block"}
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 6


@pytest.mark.parametrize(("name", "option", "message"), [
    ("uniform", "+search.options.foo=1", "search.options.foo is not an option of the uniform"),
    ("amc", "+search.options.foo=1", "search.options.foo is not an option of the amc sampler"),
    ("refine", "+search.options.foo=1", "search.options.foo is not an option of the refine"),
    ("refine", "search.options.floor=2", "search.options.floor must lie in [0, 1], got 2.0"),
    ("refine", "search.options.sigma=0", "search.options.sigma must be positive"),
    ("amc", "search.options.budget_min=0", "budget_min and budget_max must satisfy"),
    ("nsga3", "+search.options.bogus=2", "search.options do not fit the nsga3 sampler"),
])
def test_bad_sampler_options_are_one_user_error(name, option, message):
    with pytest.raises(UserError, match=re.escape(message)):
        make_sampler(search_config(name, option), 0)


def test_uniform_crosses_one_ratio_for_every_group_with_blocks_removed_from_the_deepest():
    space = PolicySpace({"a.conv": ("channel", "lowrank"), "b.block": ("layer",),
                         "c.fc": ("neuron",), "d.block": ("layer",)}, 0.0, 0.75, 0.05)
    sampler = UniformSampler(space, n_trials=9)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    cells = []
    for _ in range(9):
        trial = study.ask()
        space(trial)
        policy = Policy.from_params(space.complete(trial.params))
        ratios = {d.ratio for gid, d in policy.decisions.items() if d.strategy != "none"
                  and not gid.endswith("block")}
        assert len(ratios) <= 1 and {policy.decisions["a.conv"].strategy} == {"channel"}
        removed = tuple(g for g in ("b.block", "d.block")
                        if g in policy.decisions and policy.decisions[g].strategy == "layer")
        assert removed in ((), ("d.block",), ("b.block", "d.block"))  # deepest first
        cells.append((policy.decisions["a.conv"].ratio, len(removed)))
        study.tell(trial, [0.5, 1.0])
    assert len(set(cells)) == 9 and (0.0, 0) not in cells  # never the unpruned model
    assert {d for _, d in cells} == {0, 1, 2}
    assert sorted(r for r, d in cells if d == 2) == pytest.approx([0.0, 0.4, 0.75])  # snapped
    assert cells[:3] == [(0.25, 0), (0.0, 1), (0.0, 2)]  # a short budget still spans depths


@pytest.mark.parametrize(("blocks", "n"), [(4, 32), (0, 5), (4, 3), (2, 7), (1, 1)])
def test_the_grid_has_the_budget_of_distinct_cells(blocks, n):
    cells = grid(0.0, 0.75, blocks, n)
    assert len(cells) == n == len(set(cells))
    assert all(0.0 <= r <= 0.75 and 0 <= d <= blocks for r, d in cells)
    assert (0.0, 0) not in cells


def test_relative_accuracy_floor_is_resolved_against_the_base():
    cfg = search_config("tpe", "search.max_accuracy_drop=0.02", "search.max_latency_ms=3")
    limits = resolve_constraints(cfg, 0.95, ACCURACY)
    assert limits.metric_bound == pytest.approx(0.93)
    assert limits.values(0.94, 2.0) == pytest.approx([-1.0, -0.01])
    assert limits.met(0.94, 2.0) and not limits.met(0.92, 2.0) and not limits.met(0.94, 3.5)
    assert not Constraints() and Constraints().met(0.0, 1e9)


def test_a_drop_of_a_minimised_metric_is_a_ceiling():
    perplexity = Objective("perplexity", "minimize")
    cfg = search_config("tpe", "search.max_relative_drop=0.05")
    limits = resolve_constraints(cfg, 4.0, perplexity)
    assert limits.metric_bound == pytest.approx(4.2)
    assert limits.met(4.1, 1.0) and not limits.met(4.3, 1.0)
    assert limits.values(4.3, 1.0) == pytest.approx([0.1])
    assert "perplexity <= 4.2" in limits.describe()
    absolute = resolve_constraints(search_config("tpe", "search.max_drop=0.5"), 4.0, perplexity)
    assert absolute.metric_bound == pytest.approx(4.5)
    limit = resolve_constraints(search_config("tpe", "search.metric_limit=6"), 4.0, perplexity)
    assert limit.metric_bound == 6.0


def test_accuracy_limits_are_refused_for_another_metric():
    with pytest.raises(UserError, match="search.max_accuracy_drop limits accuracy, and this "
                                        "task's metric is perplexity: use search.max_drop"):
        resolve_constraints(search_config("tpe", "search.max_accuracy_drop=0.01"), 4.0,
                            Objective("perplexity", "minimize"))


def test_grid_cells_that_build_one_model_are_tried_once_and_the_budget_goes_elsewhere():
    # A transformer: every group lives in a block, so with every block removed the ratio is
    # moot; the grid tries that model once and sweeps the other depths finer.
    space = PolicySpace({f"blocks.{i}{part}": (kind,) for i in range(4)
                         for part, kind in (("", "layer"), (".attn", "head"),
                                            (".mlp", "neuron"))}, 0.0, 0.75, 0.05)
    points = grid_points(space, 24)
    models = {space.effective(p) for p in points}
    assert len(points) == 24 == len(models)
    every_block = [p for p in points if sum(v == "layer" for v in p.values()) == 4]
    assert len(every_block) == 1
    sampler = UniformSampler(space, n_trials=24)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    tried = set()
    for _ in range(24):
        trial = study.ask()
        space(trial)
        tried.add(space.effective(trial.params))
        study.tell(trial, [0.5, 1.0])
    assert len(tried) == 24


def test_a_sweep_fine_enough_to_snap_a_ratio_to_zero_never_builds_the_unpruned_model():
    # Depth 0 with 90 cells: its smallest ratio 0.75/90 snaps to 0 on a 0.05 grid.
    groups = {"a.conv": ("channel",), "b.block": ("layer",), "c.fc": ("neuron",)}
    space = PolicySpace(groups, 0.0, 0.75, 0.05)
    unpruned = space.effective(space.uniform_point(0.0, 0))
    for n in (10, 20, 31, 60):
        points = grid_points(space, n)
        models = [space.effective(p) for p in points]
        assert unpruned not in models and len(set(models)) == len(models)
    assert len(grid_points(space, 60)) == 31  # 16 ratios x 2 depths, less the unpruned one
    shifted = PolicySpace(groups, 0.1, 0.75, 0.05)  # no unpruned model to avoid
    assert len(grid_points(shifted, 60)) == 28
