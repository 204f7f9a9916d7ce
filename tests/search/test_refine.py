"""`refine`: a coarse width-by-depth grid, then mutations of the front's good members."""

from __future__ import annotations

import optuna
import pytest

from autoprune.pruning import Policy
from autoprune.search.refine import RefineSampler
from autoprune.search.space import PolicySpace
from autoprune.tasks import Objective

SPACE = PolicySpace({"a.conv": ("channel",), "b.block": ("layer",), "b.conv": ("channel",),
                     "c.block": ("layer",), "c.conv": ("channel",), "d.fc": ("neuron",)},
                    0.0, 0.75, 0.05)
ACCURACY = Objective("accuracy", "maximize")


def kept(policy: Policy) -> float:
    """A toy latency: the share of work left (a removed block takes its conv with it)."""
    work = 0.0
    for gid in ("a.conv", "b.conv", "c.conv", "d.fc"):
        block = gid[0] + ".block"
        if block in policy.decisions and policy.decisions[block].strategy == "layer":
            continue
        decision = policy.decisions.get(gid)
        work += 1.0 - (decision.ratio if decision and decision.strategy != "none" else 0.0)
    return work / 4


def run(sampler: RefineSampler, n: int, score) -> optuna.Study:  # noqa: ANN001
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    for _ in range(n):
        trial = study.ask()
        SPACE(trial)
        policy = Policy.from_params(SPACE.complete(trial.params))
        study.tell(trial, [score(policy), kept(policy)])
    return study


def test_the_first_trials_are_the_grid_then_children_of_the_good_front():
    sampler = RefineSampler(SPACE, 20, seed=0, options={"grid_fraction": 0.4},
                            objective=ACCURACY, reference=1.0)
    assert len(sampler.points) == 8
    # Accuracy falls with the work removed; below 0.9 of the reference nobody deploys.
    study = run(sampler, 20, lambda p: 1.0 - 0.3 * (1 - kept(p)) ** 2)
    trials = study.trials
    for trial, point in zip(trials[:8], sampler.points, strict=True):
        assert trial.params == point
    grid_params = [t.params for t in trials[:8]]
    later = trials[8:]
    assert all(t.params not in grid_params for t in later)  # never a trial tried before
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 20
    # Each child is a small change of an earlier trial that was good enough: at most one
    # block removed or restored, every ratio moved by a shift and a little noise.
    for trial in later:
        earlier = [t for t in trials[:trial.number] if t.values[0] >= 0.9]
        assert any(near(trial.params, t.params) for t in earlier), trial.params


def near(a: dict, b: dict) -> bool:
    keys = set(a) | set(b)
    toggled = sum(a.get(k) != b.get(k) for k in keys if k.endswith(".strategy"))
    moved = max((abs(a[k] - b[k]) for k in keys if k.endswith(".ratio") and k in a and k in b),
                default=0.0)
    return toggled <= 1 and moved <= 0.45


def test_children_are_uneven_policies_the_grid_cannot_express():
    sampler = RefineSampler(SPACE, 40, seed=1, options={}, objective=ACCURACY,
                            reference=1.0)
    study = run(sampler, 40, lambda p: 1.0 - 0.1 * (1 - kept(p)))
    uneven = [t for t in study.trials[len(sampler.points):]
              if len({v for k, v in t.params.items() if k.endswith(".ratio")}) > 1]
    middle_removed = [t for t in study.trials
                      if t.params.get("b.block.strategy") == "layer"
                      and t.params.get("c.block.strategy") != "layer"]
    assert uneven and middle_removed  # the grid removes blocks from the deepest only


def test_parents_are_front_models_above_the_floor_or_the_fronts_best_when_none_is():
    sampler = RefineSampler(SPACE, 10, seed=0, options={"floor": 0.95}, objective=ACCURACY,
                            reference=0.8)
    study = run(sampler, 6, lambda p: 0.8 * (0.9 + 0.1 * kept(p)))
    parents = trials_of(sampler.parents(study.trials), study)
    assert parents and all(t.values[0] >= 0.95 * 0.8 for t in parents)
    front = {t.number for t in study.best_trials}
    assert {t.number for t in parents} <= front
    low = RefineSampler(SPACE, 10, seed=0, options={"floor": 1.0}, objective=ACCURACY,
                        reference=10.0)  # nothing reaches it: the front's most accurate
    best = max(study.best_trials, key=lambda t: t.values[0])
    assert trials_of(low.parents(study.trials), study) == [best]


def trials_of(policies: list[dict], study: optuna.Study) -> list:
    """The trials of `study` that tried `policies`, in their order."""
    return [next(t for t in study.trials if t.params == p) for p in policies]


def test_a_minimised_metric_takes_parents_by_its_own_direction():
    perplexity = Objective("perplexity", "minimize")
    sampler = RefineSampler(SPACE, 10, seed=0, options={"floor": 0.9}, objective=perplexity,
                            reference=20.0)
    study = run(sampler, 6, lambda p: 20.0 / (0.8 + 0.2 * kept(p)))  # higher when pruned
    parents = trials_of(sampler.parents(study.trials), study)
    assert parents and all(20.0 / t.values[0] >= 0.9 for t in parents)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_mutation_always_changes_the_policy_and_stays_in_the_space(seed):
    sampler = RefineSampler(SPACE, 10, seed=seed, options={}, objective=ACCURACY,
                            reference=1.0)
    parent = SPACE.uniform_point(0.5, 1)
    for _ in range(50):
        child = sampler.mutate(parent)
        assert child != parent
        policy = Policy.from_params(SPACE.complete(child))
        assert all(0.0 <= d.ratio <= 0.75 for d in policy.decisions.values()
                   if d.strategy != "layer")
        for block in ("b", "c"):  # a removed block has no ratio; a kept one is channel-pruned
            if child.get(f"{block}.block.strategy") == "layer":
                assert f"{block}.block.ratio" not in child


@pytest.mark.parametrize("seed", [0, 1, 3, 4])
def test_no_child_is_the_unpruned_model(seed):
    # Restoring a block at the mean ratio 0, or shifting every ratio down to 0, rebuilds it.
    sampler = RefineSampler(SPACE, 20, seed=seed, options={"grid_fraction": 0.4},
                            objective=ACCURACY, reference=1.0)
    study = run(sampler, 20, lambda p: 1.0 - 0.3 * (1 - kept(p)))
    unpruned = SPACE.effective(SPACE.uniform_point(0.0, 0))
    assert unpruned not in [SPACE.effective(t.params) for t in study.trials]


def test_children_never_rebuild_a_model_already_tried():
    # A transformer's space: every group lives in a block. The most pruned model (every
    # block removed) is on the front as its fastest; moving its ratios would build it again.
    space = PolicySpace({f"blocks.{i}{part}": (kind,) for i in range(4)
                         for part, kind in (("", "layer"), (".attn", "head"),
                                            (".mlp", "neuron"))}, 0.0, 0.75, 0.05)
    perplexity = Objective("perplexity", "minimize")
    sampler = RefineSampler(space, 24, seed=0, options={}, objective=perplexity,
                            reference=5.0)

    def left(params: dict) -> float:  # the share of the blocks' work kept
        kept = [1.0 - params.get(f"blocks.{i}.attn.ratio", 0.0) for i in range(4)
                if params.get(f"blocks.{i}.strategy") != "layer"]
        return (0.05 + sum(kept)) / 4.05

    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    for _ in range(24):
        trial = study.ask()
        space(trial)
        study.tell(trial, [5.0 / (0.2 + 0.8 * left(trial.params)), left(trial.params)])
    models = [space.effective(t.params) for t in study.trials]
    assert len(set(models)) == 24


def test_the_unpruned_model_is_a_parent_until_a_trial_is_as_good_and_faster():
    # Every pruning costs accuracy: the gentlest models can only grow from the unpruned one.
    unpruned = SPACE.uniform_point(0.0, 0)
    sampler = RefineSampler(SPACE, 20, seed=0, options={"grid_fraction": 0.4},
                            objective=ACCURACY, reference=1.0, base_latency_ms=1.0)
    study = run(sampler, 20, lambda p: 1.0 - 0.3 * (1 - kept(p)))
    assert unpruned in sampler.parents(study.trials)
    # Its children are gentler than any grid model, and none is the unpruned model itself.
    grid = max(t.values[1] for t in study.trials[:8])
    assert grid < max(t.values[1] for t in study.trials[8:]) < 1.0
    without = RefineSampler(SPACE, 20, seed=0, options={"grid_fraction": 0.4},
                            objective=ACCURACY, reference=1.0)
    assert unpruned not in without.parents(study.trials)
    # A trial as accurate as the reference and faster: the unpruned model is off the front.
    lossless = run(RefineSampler(SPACE, 20, seed=0, options={"grid_fraction": 0.4},
                                 objective=ACCURACY, reference=1.0, base_latency_ms=1.0),
                   12, lambda p: 1.0)
    assert unpruned not in lossless.sampler.parents(lossless.trials)
