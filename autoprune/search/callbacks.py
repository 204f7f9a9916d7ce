"""Finished and running Tune trials turned into what the study reports (driver side)."""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
from ray import tune

from autoprune.hardware.bench import BenchUnavailable
from autoprune.pruning import Policy
from autoprune.search.early_stop import CHECK_LATENCY, CHECK_METRIC, CHECK_SOURCE, CHECK_STEP
from autoprune.search.latency_plan import LatencyPlan
from autoprune.search.pareto import front_records
from autoprune.search.records import INTERRUPTED, TrialRecord
from autoprune.search.space import PolicySpace
from autoprune.search.stopwatch import TIME_METRICS
from autoprune.search.trainable import (
    FINISHED,
    PROGRESS_LOSS,
    PROGRESS_STEP,
    PROGRESS_STEPS,
    RESUMED,
    STARTED,
    TRIAL_ERROR,
    TRIAL_METRICS,
    TRIAL_TRACEBACK,
)
from autoprune.search.tune_search import StudySearch

RUN_ID_ATTR = "mlflow_run_id"  # the Optuna trial's user attribute naming its MLflow run
ERROR_FILE = "error_file"  # tag: the failed trial's full traceback, as Tune wrote it
TRAIN_LOSS = "train_loss"  # the learning curve of the fine-tuning loss, logged with steps
WORKER_DIED = ("WorkerDied: the trial's worker process died (killed, or out of memory) "
               "before it reported a result")
# (trial number, step, steps, latest loss) while a trial fine-tunes; None when it ended.
OnProgress = Callable[[int, int | None, int, float], None]


def _times(result: dict) -> dict[str, float]:
    """The seconds per phase a trial reported (the `time_<phase>_s` metrics)."""
    return {k: float(result[k]) for k in TIME_METRICS if k in result}


def error_line(trial: Any) -> str:
    """The failed trial's reason in one line: the original exception, not Ray's wrapping."""
    from ray import cloudpickle

    text = ""
    try:
        if trial.pickled_error_file and os.path.exists(trial.pickled_error_file):
            with open(trial.pickled_error_file, "rb") as handle:
                error = cloudpickle.load(handle)
            if isinstance(error, ray.exceptions.RayActorError):
                return WORKER_DIED
            cause = getattr(error, "cause", None) or error
            text = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
        elif trial.error_file and os.path.exists(trial.error_file):
            text = Path(trial.error_file).read_text()
    except Exception:  # an unreadable error file must not take the study down with it
        text = ""
    lines = [s.strip() for s in text.splitlines() if s.strip()]
    return lines[-1] if lines else "unknown error"


class StudyCallback(tune.Callback):
    """Turns finished Tune trials into TrialRecords for the reporters, and passes on the
    progress of running ones.

    It also watches the latency device: when `give_up_after` trials in a row could not be
    measured, the study stops (the device hung, died or left) instead of failing every
    remaining trial the same way.
    """

    def __init__(self, searcher: StudySearch, space: PolicySpace, plan: LatencyPlan,
                 give_up_after: int, store: Any, on_record: Callable[[TrialRecord], None],
                 on_progress: OnProgress | None = None, errors: Path | None = None,
                 on_start: Callable[[int], str] | None = None) -> None:
        self.searcher = searcher
        # trial number -> the id of its MLflow run, created as it starts
        self.on_start = on_start
        self.run_ids: dict[str, str] = {}  # trial id -> its MLflow run
        self.errors = errors  # where failed trials' tracebacks are kept
        self.space = space
        self.latency_source = plan.source
        self.gate = plan.gate
        self.give_up_after = give_up_after
        self.unmeasured = 0  # trials in a row the bench could not measure
        self.store = store
        self.on_record = on_record
        self.on_progress = on_progress
        self.records: list[TrialRecord] = []
        self.objective = searcher.stopper.objective
        self.curves: dict[str, dict[str, list]] = {}  # trial id -> learning curves so far
        self.started: dict[str, float] = {}  # trial id -> when Tune started it

    def _watch_device(self, record: TrialRecord) -> None:
        if record.state == "failed" and record.error.startswith(BenchUnavailable.__name__):
            self.unmeasured += 1
        elif record.state in ("complete", "stopped"):
            self.unmeasured = 0
        stopper = self.searcher.stopper
        if self.unmeasured >= self.give_up_after and stopper.gave_up is None:
            stopper.gave_up = (f"the latency device did not answer: {self.unmeasured} trials "
                               f"in a row could not be measured (last: {record.error})")

    def _emit(self, record: TrialRecord) -> None:
        self.records.append(record)
        self._watch_device(record)
        if self.on_progress is not None:
            self.on_progress(record.number, None, 0, math.nan)
        if record.state == "complete":
            front = {id(r) for r in front_records(self.records, self.objective)}
            # Only completed trials off the (feasible) front: weights of trials still running
            # stay.
            self.store.drop.remote([r.weights_key for r in self.records
                                    if r.state == "complete" and id(r) not in front])
        self.on_record(record)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        curves = self.curves.setdefault(trial.trial_id, {})
        now = time.time()
        if PROGRESS_STEP in result:
            curves.setdefault(TRAIN_LOSS, []).append(
                (int(result[PROGRESS_STEP]), float(result[PROGRESS_LOSS]), now))
        if CHECK_STEP in result:
            curves.setdefault(self.objective.metric, []).append(
                (int(result[CHECK_STEP]), float(result[CHECK_METRIC]), now))
        if self.on_progress is not None and PROGRESS_STEP in result:
            self.on_progress(self.searcher.optuna_number(trial.trial_id),
                             int(result[PROGRESS_STEP]), int(result[PROGRESS_STEPS]),
                             float(result[PROGRESS_LOSS]))

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.started.setdefault(trial.trial_id, time.time())
        if self.on_start is not None and trial.trial_id not in self.run_ids:  # not a retry
            run_id = self.on_start(self.searcher.optuna_number(trial.trial_id))
            self.run_ids[trial.trial_id] = run_id
            self.searcher.set_user_attr(trial.trial_id, RUN_ID_ATTR, run_id)

    def _record(self, trial: Any, state: str, **fields: Any) -> TrialRecord:
        """The record of a finished trial; one that did not say when it started and ended
        (stopped, failed) gets when Tune started it and now."""
        params = self.space.complete(dict(trial.config))
        started = self.started.pop(trial.trial_id, None)
        if fields.get("started") is None:
            fields.update(started=started, finished=time.time())
        return TrialRecord(self.searcher.optuna_number(trial.trial_id), params, state,
                           latency_source=fields.pop("latency_source", self.latency_source),
                           summary=Policy.from_params(params).summary(),
                           curves=self.curves.pop(trial.trial_id, {}),
                           run_id=self.run_ids.pop(trial.trial_id, None), **fields)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        why = self.searcher.stopper.stopped.get(trial.trial_id)
        if why is not None:
            metrics = {self.objective.metric: float(result.get(CHECK_METRIC, math.nan)),
                       "latency_ms": float(result.get(CHECK_LATENCY, math.nan)),
                       "steps": float(result.get(CHECK_STEP, math.nan)), **_times(result)}
            source = result.get(CHECK_SOURCE)
            self._emit(self._record(trial, "stopped", metrics=metrics, error=why,
                                    **({"latency_source": str(source)} if source else {})))
            return
        if TRIAL_ERROR in result:  # it failed on its own, and said why
            record = self._record(trial, "failed", error=str(result[TRIAL_ERROR]),
                                  metrics=_times(result))
            self._keep_traceback(record, text=str(result.get(TRIAL_TRACEBACK, "")))
            self._emit(record)
            return
        values = [result.get(m) for m in self.searcher.metric]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values) \
                or TRIAL_METRICS not in result:
            error = "no finite result reported" if self.searcher.stopper.gave_up is None else \
                f"{INTERRUPTED}: the study stopped before this trial finished"
            self._emit(self._record(trial, "failed", error=error))
            return
        policy = Policy.from_params(self.space.complete(dict(trial.config)))
        tags = {k: str(result[k]) for k in ("device", "gpu_ids", RESUMED)
                if result.get(k) is not None}
        self._emit(self._record(
            trial, "complete", metrics={k: float(v) for k, v in result[TRIAL_METRICS].items()},
            latency_source=str(result.get("latency_source", "")), strategies=policy.used(),
            weights_key=trial.trial_id, feasible=self.searcher.constraints.met(*values),
            tags=tags, started=result.get(STARTED), finished=result.get(FINISHED)))

    def _drop_gate(self, trial: Any) -> None:
        if self.gate is not None:  # a worker that died may have held the core gate
            self.gate.drop.remote(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._drop_gate(trial)
        record = self._record(trial, "failed", error=error_line(trial))
        if trial.error_file and os.path.exists(trial.error_file):
            self._keep_traceback(record, source=trial.error_file)
        self._emit(record)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._drop_gate(trial)  # its worker died; Tune runs it again, from its checkpoint

    def _keep_traceback(self, record: TrialRecord, text: str = "", source: str = "") -> None:
        """The whole traceback (the record carries its last line), kept with the study's
        output and named in the record's tags (Tune's own copy, in Ray's session folder, does
        not last)."""
        if self.errors is None or not (text or source):
            return
        self.errors.mkdir(parents=True, exist_ok=True)
        kept = self.errors / f"trial-{record.number:03d}.txt"
        if source:
            shutil.copyfile(source, kept)
        else:
            kept.write_text(text)
        record.tags[ERROR_FILE] = str(kept.resolve())
