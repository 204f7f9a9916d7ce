"""The Ray Tune side: failed trials reach Optuna as FAIL, never as stale values; the driver's
weight store."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
import ray
import torch

from autoprune.search.early_stop import (
    CHECK_LATENCY,
    CHECK_METRIC,
    CHECK_STEP,
    EarlyStop,
    rung_steps,
)
from autoprune.search.runner import weight_store
from autoprune.search.samplers import CONSTRAINTS_ATTR, Constraints
from autoprune.search.space import PolicySpace
from autoprune.search.tune_search import StudySearch
from autoprune.tasks import Objective

ACCURACY = Objective("accuracy", "maximize")
PERPLEXITY = Objective("perplexity", "minimize")


def result(step: int, value: float, ms: float) -> dict:
    return {CHECK_STEP: step, CHECK_METRIC: value, CHECK_LATENCY: ms}


def searcher(constraints: Constraints | None = None, stopper: EarlyStop | None = None
             ) -> StudySearch:
    space = PolicySpace({"a.conv": ("channel",)}, 0.0, 0.5, 0.1)
    return StudySearch(space=space, metric=["accuracy", "latency_ms"], mode=["max", "min"],
                       sampler=optuna.samplers.RandomSampler(seed=0), study_name="unit-test",
                       constraints=constraints or Constraints(),
                       stopper=stopper or EarlyStop(True, 0.1, 2, ACCURACY))


@pytest.mark.parametrize(
    ("result", "error"),
    [
        ({"accuracy": 0.9, "latency_ms": 1.0}, True),  # reported, then crashed
        ({"accuracy": math.nan, "latency_ms": 1.0}, False),  # diverged value slipped through
        (None, False),  # never reported
    ],
)
def test_untrustworthy_trials_are_told_to_optuna_as_fail(result, error):
    search = searcher()
    config = search.suggest("t1")
    assert "a.conv.ratio" in config
    search.on_trial_complete("t1", result=result, error=error)
    trial = search.study.trials[0]
    assert trial.state == optuna.trial.TrialState.FAIL
    assert trial.values is None


def test_good_trials_complete_with_both_objectives():
    search = searcher()
    search.suggest("t1")
    search.on_trial_complete("t1", result={"accuracy": 0.9, "latency_ms": 1.5})
    trial = search.study.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert trial.values == [0.9, 1.5]
    assert search.optuna_number("t1") == 0


def test_completed_trials_carry_their_constraint_values():
    search = searcher(Constraints(max_latency_ms=1.0, metric_bound=0.95))
    search.suggest("t1")
    search.on_trial_complete("t1", result={"accuracy": 0.9, "latency_ms": 1.5})
    trial = search.study.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert trial.user_attrs[CONSTRAINTS_ATTR] == pytest.approx([0.5, 0.05])
    assert trial.constraints == pytest.approx({"max_latency_ms": 0.5, "metric_bound": 0.05})
    search.suggest("t2")
    search.on_trial_complete("t2", result={"accuracy": 0.96, "latency_ms": 0.9})
    # Optuna's own view of the front counts only the feasible trial, whatever the sampler.
    assert [t.number for t in search.study.best_trials] == [1]


def test_a_trial_stopped_early_is_pruned_in_optuna():
    stopper = EarlyStop(True, 0.1, 2, ACCURACY)
    search = searcher(stopper=stopper)
    search.suggest("t0")
    assert not stopper("t0", result(1, 0.9, 1.0))
    search.suggest("t1")
    midway = result(1, 0.5, 1.2)
    assert stopper("t1", midway)
    search.on_trial_complete("t1", result=midway)
    trial = search.study.trials[1]
    assert trial.state == optuna.trial.TrialState.PRUNED and trial.values is None


def test_each_rung_passes_on_its_front_and_stops_what_falls_behind():
    stop = EarlyStop(True, 0.1, 8, ACCURACY, rungs=(0.25, 0.5))  # rungs after steps 2 and 4
    assert stop.rungs == (2, 4)
    assert not stop("a", result(2, 0.80, 1.0))  # first at the rung: nothing to trail
    assert not stop("b", result(1, 0.10, 1.2))  # not a rung
    assert not stop("b", result(3, 0.10, 1.2))
    assert stop("b", result(2, 0.60, 1.2))  # slower and far behind at the same rung
    assert "after 2/8 steps" in stop.stopped["b"] and "had 80.00%" in stop.stopped["b"]
    assert not stop("c", result(2, 0.60, 0.9))  # faster: may still be on the front
    assert not stop("d", result(2, 0.75, 1.2))  # within the (relative) margin
    # A later rung compares with the trials that reached it, not with earlier rungs.
    assert not stop("a", result(4, 0.70, 1.0))
    assert stop("d", result(4, 0.50, 1.2))
    assert not stop("e", result(4, 0.90, 1.2))  # better than everything there: goes on


def test_a_trial_is_judged_against_trials_still_running_like_asha():
    stop = EarlyStop(True, 0.0, 4, ACCURACY, rungs=(0.5,))
    assert not stop("running", result(2, 0.9, 1.0))  # has not finished, yet it is a reference
    assert stop("late", result(2, 0.8, 1.0))


def final(value: float, ms: float) -> dict:
    return {"accuracy": value, "latency_ms": ms}


def test_with_curves_a_trial_behind_goes_on_when_one_as_far_behind_ended_on_the_front():
    stop = EarlyStop(True, 0.005, 8, ACCURACY, rungs=(0.25,), curves=True)
    assert not stop("fast-starter", result(2, 0.95, 1.0))  # e.g. a block removed
    assert not stop("fast-starter", final(0.96, 1.0))
    # Nothing finished was as far behind at the rung yet: stopped, as without curves.
    assert stop("slow", result(2, 0.30, 1.2))
    assert not stop("fast", result(2, 0.40, 0.8))  # the fastest: nothing to trail
    assert not stop("fast", final(0.99, 0.8))  # recovered past the fast starter
    # Now a trial behind at the rung may end as well as "fast" did: it goes on...
    assert not stop("alike", result(2, 0.40, 1.2))
    # ...unless a finished trial at least as fast already beats that end by the margin.
    assert not stop("best", result(2, 0.97, 0.7))
    assert not stop("best", final(0.999, 0.7))
    assert stop("beaten", result(2, 0.45, 1.2))
    assert not stop("faster-still", result(2, 0.45, 0.6))
    # A trial further behind than every finished one at the rung has no such evidence.
    assert stop("far", result(2, 0.10, 1.5))
    # Without curves the same trials stop at the rung, as each trails a faster one there.
    plain = EarlyStop(True, 0.005, 8, ACCURACY, rungs=(0.25,))
    for trial, step, value, ms in (("s", 2, 0.95, 1.0), ("f", 2, 0.40, 0.8)):
        assert not plain(trial, result(step, value, ms))
    assert not plain("f", final(0.99, 0.8))
    assert plain("alike", result(2, 0.40, 1.2))


def test_rungs_are_steps_before_the_last():
    assert rung_steps((0.25, 0.5), 34) == (8, 17)
    assert rung_steps((0.01, 0.5, 0.99), 10) == (5,)  # rounded to no step or the last: dropped
    assert not EarlyStop(True, 0.1, 1, ACCURACY).enabled  # one step: nothing to check
    assert not EarlyStop(False, 0.1, 4, ACCURACY)("x", result(2, 0.0, 9.0))


def test_early_stopping_of_a_minimised_metric_stops_the_higher_values():
    stop = EarlyStop(True, 0.1, 10, PERPLEXITY)
    assert not stop("a", result(5, 5.0, 1.0))
    assert stop("b", result(5, 6.0, 1.2))  # 20% higher perplexity, no faster
    assert "perplexity 6 at 1.200 ms" in stop.stopped["b"]
    assert not stop("c", result(5, 5.4, 1.2))  # 8% higher: within the margin
    assert not stop("d", result(5, 4.0, 1.2))  # better


def test_a_study_joining_a_cluster_ships_this_package_unless_told_otherwise():
    import autoprune
    from autoprune.search.runner import job_environment

    package = str(Path(autoprune.__file__).resolve().parent)
    assert job_environment(None) == {"py_modules": [package]}
    assert job_environment({"working_dir": ".", "pip": ["timm"]}) == {
        "working_dir": ".", "pip": ["timm"], "py_modules": [package]}
    assert job_environment({"py_modules": ["/opt/wheels/autoprune.whl"]}) == {
        "py_modules": ["/opt/wheels/autoprune.whl"]}


def test_the_weight_store_comes_warmed_up_and_empty(local_ray):
    store = weight_store()
    with pytest.raises(ray.exceptions.RayTaskError, match="KeyError"):
        ray.get(store.get.remote(""))  # the warm-up's tensor is gone
    state = {"w": torch.arange(3.0)}
    ray.get(store.put.remote("trial", state))
    assert torch.equal(ray.get(store.get.remote("trial"))["w"], state["w"])
    ray.get(store.drop.remote(["trial"]))
    with pytest.raises(ray.exceptions.RayTaskError, match="KeyError"):
        ray.get(store.get.remote("trial"))
