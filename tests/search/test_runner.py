"""The Ray Tune side: failed trials reach Optuna as FAIL, never as stale values."""

from __future__ import annotations

import math

import optuna
import pytest

from autoprune.search.runner import StudySearch
from autoprune.search.space import PolicySpace


def searcher() -> StudySearch:
    space = PolicySpace({"a.conv": ("channel",)}, 0.0, 0.5, 0.1)
    return StudySearch(space=space, metric=["accuracy", "latency_ms"], mode=["max", "min"],
                       sampler=optuna.samplers.RandomSampler(seed=0), study_name="unit-test")


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
    trial = search._ot_study.trials[0]
    assert trial.state == optuna.trial.TrialState.FAIL
    assert trial.values is None


def test_good_trials_complete_with_both_objectives():
    search = searcher()
    search.suggest("t1")
    search.on_trial_complete("t1", result={"accuracy": 0.9, "latency_ms": 1.5})
    trial = search._ot_study.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert trial.values == [0.9, 1.5]
    assert search.optuna_number("t1") == 0
