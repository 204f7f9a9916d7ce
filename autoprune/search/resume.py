"""Resuming a study that was stopped: Ctrl-C, SIGTERM, or a driver that was killed.

`resume=true` picks the latest study of this command's `study_name` that did not finish (its
MLflow study run is not FINISHED); `resume=<study name>` names one. Before the remaining
trials run, what a killed driver left behind is repaired: Optuna trials stuck RUNNING become
FAIL (marked interrupted, so they do not count toward the budget), and every trial Optuna
finished but MLflow never heard of gets its nested run, so both stores hold the same trials.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna

from autoprune.errors import UserError
from autoprune.search.records import TrialRecord
from autoprune.search.samplers import CONSTRAINTS_ATTR

INTERRUPTED_ATTR = "interrupted"


@dataclass
class Resumed:
    """A stopped study, repaired and ready to continue."""

    study_name: str
    run_id: str  # its MLflow study run
    done: int  # trials that count toward the budget
    repaired: int  # Optuna trials that were stuck RUNNING
    backfilled: int  # finished trials MLflow was missing
    base_latency_ms: float  # as the study first measured it: speedups stay comparable


def counts(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a trial counts toward the budget: finished, stopped early, or failed on its
    own (not one that was interrupted)."""
    state = optuna.trial.TrialState
    if trial.state in (state.COMPLETE, state.PRUNED):
        return True
    return trial.state == state.FAIL and not trial.user_attrs.get(INTERRUPTED_ATTR)


def mark_interrupted(storage: optuna.storages.BaseStorage, study_name: str) -> int:
    """Optuna trials left RUNNING become FAIL, marked interrupted; returns how many."""
    study = optuna.load_study(study_name=study_name, storage=storage)
    stuck = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    study_id = storage.get_study_id_from_name(study_name)
    for trial in stuck:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_user_attr(trial_id, INTERRUPTED_ATTR, True)
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    return len(stuck)


def find_study(storage_url: str, prefix: str, resume: Any, client: Any,
               experiment: str) -> tuple[str, Any]:
    """The Optuna study name and MLflow study run to resume; raises UserError."""
    found = client.get_experiment_by_name(experiment)
    runs = [] if found is None else client.search_runs(
        [found.experiment_id], "tags.role = 'study'", order_by=["attributes.start_time DESC"],
        max_results=1000)
    if isinstance(resume, str) and resume.lower() not in ("true", "false"):
        wanted = [r for r in runs if r.data.tags.get("study") == resume]
        if not wanted:
            raise UserError(f"resume={resume}: no study of that name in the MLflow store")
        run = wanted[0]
    else:
        open_runs = [r for r in runs if r.data.tags.get("study", "").startswith(f"{prefix}-")
                     and r.info.status != "FINISHED"]
        if not open_runs:
            raise UserError(f"resume=true: no unfinished study named {prefix}-* in the MLflow "
                            "store; run without resume to start one")
        run = open_runs[0]
    name = run.data.tags["study"]
    if name not in optuna.get_all_study_names(storage_url):
        raise UserError(f"study {name} is in MLflow but not in the Optuna storage "
                        f"{storage_url}; search.storage must be the one the study used")
    return name, run


def backfill(tracker: Any, study_name: str, storage: optuna.storages.BaseStorage,
             logged: set[int], space: Any, metric: str = "accuracy") -> int:
    """Give every finished Optuna trial without an MLflow trial run one (from what Optuna
    stored: the objectives, `metric` and latency, and the params); returns how many."""
    from autoprune.pruning import Policy

    study = optuna.load_study(study_name=study_name, storage=storage)
    added = 0
    for trial in study.get_trials(deepcopy=False):
        if trial.number in logged or trial.state == optuna.trial.TrialState.RUNNING:
            continue
        params = space.complete(trial.params)
        if trial.state == optuna.trial.TrialState.COMPLETE:
            # Feasible as Optuna stored it: the constraint values told with the trial.
            limits = trial.user_attrs.get(CONSTRAINTS_ATTR, [])
            record = TrialRecord(trial.number, params, "complete",
                                 {metric: trial.values[0], "latency_ms": trial.values[1]},
                                 summary=Policy.from_params(params).summary(),
                                 feasible=all(v <= 0 for v in limits))
        elif trial.state == optuna.trial.TrialState.PRUNED:
            record = TrialRecord(trial.number, params, "stopped", error="stopped early",
                                 summary=Policy.from_params(params).summary())
        else:
            why = "interrupted" if trial.user_attrs.get(INTERRUPTED_ATTR) else "failed"
            record = TrialRecord(trial.number, params, "failed", error=why,
                                 summary=Policy.from_params(params).summary())
        tracker.log_trial(record, study_name)
        added += 1
    return added


def study_storage(previous) -> str:
    """The Optuna storage a study used, from its MLflow tags."""
    return previous.data.tags["optuna_storage"]


class Retrain:
    """Fine-tuned weights of an earlier run's trial, rebuilt: same policy, base model, data
    and seed give the same weights (the trial's thread count is used, as rounding depends on
    it)."""

    def __init__(self, base, groups, workload, settings, threads: int,  # noqa: ANN001
                 say: Callable[[str], None] = print) -> None:
        self.base, self.groups, self.workload = base, groups, workload
        self.settings, self.threads, self.say = settings, threads, say

    def __call__(self, record: TrialRecord) -> dict:
        import torch

        from autoprune.pruning import Policy
        from autoprune.search.objective import prune_and_finetune

        self.say(f"rebuilding trial {record.number} of the earlier run (its weights were not kept)")
        threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            model = prune_and_finetune(Policy.from_params(record.params), self.base,
                                       self.groups, self.workload, self.settings)
        finally:
            torch.set_num_threads(threads)
        return model.cpu().state_dict()


class AcrossRuns:
    """The records of a study across runs: this run's weights from Ray, earlier ones rebuilt."""

    def __init__(self, records: list, study, retrain: Retrain) -> None:  # noqa: ANN001
        self.records = records
        self.study = study
        self.retrain = retrain

    def weights(self, record: TrialRecord) -> dict:
        if record.weights_key is not None:
            return self.study.weights(record)
        return self.retrain(record)
