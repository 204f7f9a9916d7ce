"""The bridge between Ray Tune and the study's Optuna study."""

from __future__ import annotations

import math
from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

from autoprune.search.early_stop import EarlyStop
from autoprune.search.resume import INTERRUPTED_ATTR
from autoprune.search.samplers import CONSTRAINTS_ATTR, Constraints


class StudySearch(OptunaSearch):
    """OptunaSearch that never leaves stale values behind, and knows the study's constraints.

    A trial that errored, reported nothing, or reported a non-finite objective is told to
    Optuna as FAIL (plain OptunaSearch would keep earlier values as COMPLETE, or leave the
    trial RUNNING when Optuna rejects a NaN). A trial stopped early is told as PRUNED. A
    completed trial carries its constraint values, stored with `Trial.set_constraint` (read by
    every sampler that honours constraints, and by `study.best_trials`) and as the user
    attribute `constraints` for the study's own records. `metric` is [the task's metric,
    "latency_ms"].
    """

    def __init__(self, *args: Any, constraints: Constraints, stopper: EarlyStop,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.constraints = constraints
        self.stopper = stopper

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        values = [None if result is None else result.get(m) for m in self.metric]
        finite = all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
        ot_trial = self._ot_trials[trial_id]
        if self.stopper.gave_up is not None and not finite:
            ot_trial.set_user_attr(INTERRUPTED_ATTR, True)
            self._ot_study.tell(ot_trial, None, state=optuna.trial.TrialState.FAIL)
            self._completed_trials.add(trial_id)
            return
        if not error and trial_id in self.stopper.stopped:
            self._ot_study.tell(ot_trial, None, state=optuna.trial.TrialState.PRUNED)
            self._completed_trials.add(trial_id)
            return
        if error or not finite:
            self._ot_study.tell(ot_trial, None, state=optuna.trial.TrialState.FAIL)
            self._completed_trials.add(trial_id)
            return
        if self.constraints:
            ot_trial.set_user_attr(CONSTRAINTS_ATTR, self.constraints.values(*values))
            for name, value in self.constraints.named(*values).items():
                ot_trial.set_constraint(name, value)
        super().on_trial_complete(trial_id, result, error)

    def optuna_number(self, trial_id: str) -> int:
        return self._ot_trials[trial_id].number
