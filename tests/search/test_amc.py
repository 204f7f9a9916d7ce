"""The AMC-style agent: the action wall, and that it learns."""

from __future__ import annotations

import optuna
import pytest
import torch

from autoprune.search.amc import AMCSampler
from autoprune.search.amc_features import GroupFeatures
from autoprune.search.amc_options import AGENT_OPTIONS, AgentOptions
from autoprune.search.space import PolicySpace

GRID = (0.0, 0.25, 0.5, 0.75)


def features(savings_at_max=(0.2, 0.2, 0.2, 0.2)) -> list[GroupFeatures]:
    """Synthetic groups whose latency saving grows linearly with the ratio."""
    return [GroupFeatures(f"g{i}", "channel", (i / 3, 1, 0, 0, 0, 0.5, 0.5, 0.5, 0.5, 0.25, s),
                          GRID, tuple(s * r / 0.75 for r in GRID))
            for i, s in enumerate(savings_at_max)]


SPACE = PolicySpace({f"g{i}": ("channel",) for i in range(4)}, 0.0, 0.75, 0.05)


def agent(seed=0, **options) -> AMCSampler:
    return AMCSampler(features(), SPACE, base_latency_ms=1.0, options=options, seed=seed)


def test_action_wall_keeps_every_episode_inside_its_budget():
    sampler = agent()
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    for _ in range(30):
        trial = study.ask()
        SPACE(trial)
        episode = sampler.episodes[trial.number]
        removed = sum(f.saving(trial.params[f"{f.gid}.ratio"]) for f in sampler.features)
        assert 0.25 <= episode.budget <= 0.9
        assert 1.0 - removed <= episode.budget + 1e-9  # ratios are rounded up on the grid
        study.tell(trial, [0.9, 1.0 - removed])


def test_budgets_below_what_the_model_can_reach_are_not_drawn():
    sampler = AMCSampler(features((0.1, 0.1, 0.1, 0.1)), SPACE, 1.0, {}, 0)
    assert sampler.reachable() == pytest.approx(0.6)
    assert all(0.6 - 1e-9 <= sampler._budget() <= 0.9 for _ in range(100))


def test_the_agent_learns_which_groups_to_prune():
    # Accuracy suffers from pruning g2 and g3, hardly from g0 and g1. An actor that learned
    # nothing would leave the budget to the wall, which cuts the last groups; after training
    # on episodes it prunes g0 and g1 harder than g2 and g3 for the same budget.
    sampler = agent(warmup_episodes=20, updates_per_episode=64)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    for _ in range(80):
        trial = study.ask()
        SPACE(trial)
        r = [trial.params[f"g{i}.ratio"] for i in range(4)]
        accuracy = 1.0 - 0.05 * (r[0] ** 2 + r[1] ** 2) - 0.8 * (r[2] ** 2 + r[3] ** 2)
        saved = sum(f.saving(x) for f, x in zip(sampler.features, r, strict=True))
        study.tell(trial, [accuracy, 1.0 - saved])
    sampler.options = AgentOptions.from_dict({**AGENT_OPTIONS, "noise": 0.0})
    sampler.learned = 10**6  # no warm-up, no noise: the actor's own choice
    with torch.no_grad():
        episode = sampler._walk(0.8, lambda state, floor: float(sampler.actor(
            torch.tensor([state]))[0, 0]))
    ratios = [episode.params[f"g{i}"] for i in range(4)]
    assert min(ratios[0], ratios[1]) > max(ratios[2], ratios[3])


def test_trials_it_did_not_propose_are_learned_from():
    sampler = agent()
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    study.enqueue_trial({f"g{i}.ratio": 0.5 for i in range(4)})
    trial = study.ask()
    SPACE(trial)
    assert trial.number not in sampler.episodes
    study.tell(trial, [0.9, 0.6])
    assert sampler.learned == 1 and len(sampler.memory) == 4
    # Labelled with the budget it achieved: 4 groups x 0.2 x (0.5 / 0.75) removed.
    assert sampler.memory[0][0][11] == pytest.approx(1 - 4 * 0.2 * 0.5 / 0.75)


def test_failed_trials_teach_nothing():
    sampler = agent()
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    trial = study.ask()
    SPACE(trial)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    assert sampler.learned == 0 and not sampler.memory


def test_blocks_are_kept_or_removed_whole_inside_the_wall():
    block = GroupFeatures("blk", "layer", (1.0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0.3), (0.0, 1.0),
                          (0.0, 0.3), binary=True)
    space = PolicySpace({"g0": ("channel",), "g1": ("channel",), "blk": ("layer",)},
                        0.0, 0.75, 0.05)
    assert space.choices["blk"] == ("layer", "none")
    sampler = AMCSampler([*features((0.2, 0.2))[:2], block], space, 1.0, {}, 0)
    assert block.saving(0.4) == 0.0 and block.saving(0.6) == pytest.approx(0.3)
    assert block.ratio_for(0.1, 0.0, 1.0) == 1.0 and block.ratio_for(0.0, 0.0, 1.0) == 0.0
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    seen = set()
    for _ in range(20):
        trial = study.ask()
        space(trial)
        removed = trial.params["blk.strategy"] == "layer"
        seen.add(removed)
        assert "blk.ratio" not in trial.params
        saved = sum(f.saving(trial.params[f"{f.gid}.ratio"]) for f in sampler.features[:2])
        saved += 0.3 if removed else 0.0
        assert 1.0 - saved <= sampler.episodes[trial.number].budget + 1e-9
        study.tell(trial, [0.9, 1.0 - saved])
    assert seen == {True, False}


def test_the_wall_asks_for_more_when_measurements_show_less_saving():
    sampler = agent(warmup_episodes=100)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    for _ in range(10):
        trial = study.ask()
        SPACE(trial)
        predicted = sum(f.saving(trial.params[f"{f.gid}.ratio"]) for f in sampler.features)
        study.tell(trial, [0.9, 1.0 - 0.5 * predicted])  # only half the predicted saving
    assert sampler.correction() == pytest.approx(0.5)
    assert sampler.reachable() == pytest.approx(1 - 0.5 * 0.8)
    for _ in range(10):
        trial = study.ask()
        SPACE(trial)
        predicted = sum(f.saving(trial.params[f"{f.gid}.ratio"]) for f in sampler.features)
        assert 1.0 - 0.5 * predicted <= sampler.episodes[trial.number].budget + 1e-9
        study.tell(trial, [0.9, 1.0 - 0.5 * predicted])


def test_a_resumed_study_is_learned_from_before_the_next_proposal():
    storage = optuna.storages.InMemoryStorage()
    first = optuna.create_study(directions=["maximize", "minimize"], storage=storage,
                                study_name="s", sampler=agent())
    for _ in range(3):
        trial = first.ask()
        SPACE(trial)
        first.tell(trial, [0.9, 0.6])
    fresh = agent()  # a new driver: the agent starts empty
    resumed = optuna.load_study(study_name="s", storage=storage, sampler=fresh)
    trial = resumed.ask()
    SPACE(trial)
    assert fresh.learned == 3 and fresh.seen == {0, 1, 2}
    resumed.tell(trial, [0.9, 0.6])
    assert fresh.learned == 4
