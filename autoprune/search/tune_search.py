"""The bridge between Ray Tune and the study's Optuna study: a Tune `Searcher` built on Optuna's
public ask-and-tell interface."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
from ray.tune.search import Searcher

from autoprune.search.early_stop import EarlyStop
from autoprune.search.resume import INTERRUPTED_ATTR
from autoprune.search.samplers import CONSTRAINTS_ATTR, Constraints


class StudySearch(Searcher):
    """Each Tune trial is an Optuna trial of the study: asked for its policy, told its outcome.

    `space` is the define-by-run policy space (called on the asked trial). The study is loaded
    when it exists (resume) and `points_to_evaluate` are enqueued as its first trials. A trial
    that errored, reported nothing, or reported a non-finite objective is told as FAIL (never
    with stale values); a trial stopped early is told as PRUNED; a trial the study gave up on
    is FAIL and marked interrupted. A completed trial carries its constraint values, stored
    with `Trial.set_constraint` (read by every sampler that honours constraints, and by
    `study.best_trials`) and as the user attribute `constraints` for the study's own records.
    `metric` is [the task's metric, "latency_ms"], `mode` their Tune directions.
    """

    def __init__(self, space: Callable[[optuna.Trial], dict | None], metric: Sequence[str],
                 mode: Sequence[str], sampler: optuna.samplers.BaseSampler, study_name: str,
                 constraints: Constraints, stopper: EarlyStop,
                 storage: optuna.storages.BaseStorage | None = None,
                 points_to_evaluate: Sequence[dict] | None = None) -> None:
        super().__init__(metric=list(metric), mode=list(mode))
        self.metrics = list(metric)
        self.study = optuna.create_study(
            storage=storage, sampler=sampler, pruner=optuna.pruners.NopPruner(),
            study_name=study_name, load_if_exists=True,
            directions=["maximize" if m == "max" else "minimize" for m in mode])
        with warnings.catch_warnings():  # experimental since Optuna 3.2, and says so each call
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.study.set_metric_names(list(metric))  # named in optuna-dashboard and plots
        for point in points_to_evaluate or ():
            self.study.enqueue_trial(point)
        self.space = space
        self.constraints = constraints
        self.stopper = stopper
        self.asked: dict[str, optuna.Trial] = {}
        self.told: set[str] = set()

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict,
                              **spec: Any) -> bool:
        return False  # the space, metrics and modes were given; Tune's are not needed

    def suggest(self, trial_id: str) -> dict:
        if trial_id not in self.asked:
            self.asked[trial_id] = self.study.ask()
        trial = self.asked[trial_id]
        extra = self.space(trial)
        return {**trial.params, **(extra or {})}

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        if trial_id in self.told:
            return
        self.told.add(trial_id)
        trial = self.asked[trial_id]
        values = [None if result is None else result.get(m) for m in self.metrics]
        finite = all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
        state = optuna.trial.TrialState
        if self.stopper.gave_up is not None and not finite:
            trial.set_user_attr(INTERRUPTED_ATTR, True)
            self.study.tell(trial, None, state=state.FAIL)
        elif not error and trial_id in self.stopper.stopped:
            self.study.tell(trial, None, state=state.PRUNED)
        elif error or not finite:
            self.study.tell(trial, None, state=state.FAIL)
        else:
            if self.constraints:
                trial.set_user_attr(CONSTRAINTS_ATTR, self.constraints.values(*values))
                for name, value in self.constraints.named(*values).items():
                    trial.set_constraint(name, value)
            self.study.tell(trial, values)

    def optuna_number(self, trial_id: str) -> int:
        return self.asked[trial_id].number

    def set_user_attr(self, trial_id: str, key: str, value: Any) -> None:
        """A user attribute on the (running) Optuna trial of a Tune trial."""
        self.asked[trial_id].set_user_attr(key, value)

    def save(self, checkpoint_path: str) -> None:
        """Which Optuna trial each Tune trial is (Tune's experiment checkpoint); the study
        itself is in its Optuna storage, and a study resumes from there (`resume=`)."""
        import json

        Path(checkpoint_path).write_text(json.dumps({
            "study": self.study.study_name, "told": sorted(self.told),
            "trials": {tid: trial.number for tid, trial in self.asked.items()}}))
