"""Ray Tune runner: trials in parallel, Optuna proposing policies, results to callbacks.

The driver owns everything shared: the Optuna study (inside OptunaSearch), the latency bench
and core gate actors, and the reporting callbacks. Workers only run `run_trial`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import ray
import torch
from ray import tune
from ray.tune.search.optuna import OptunaSearch
from torch import nn

from autoprune.config import HardwareProfile, RayConfig, SearchConfig
from autoprune.data.splits import DataSplits
from autoprune.errors import StudyFailed, UserError
from autoprune.hardware.bench import (
    Bench,
    BenchLatency,
    BenchUnavailable,
    CoreGate,
    TrainingGuard,
)
from autoprune.hardware.latency import LatencyBackend
from autoprune.hardware.predictor import PredictedLatency
from autoprune.pruning import Policy, PrunableGroup
from autoprune.search.objective import TrialSettings, run_trial
from autoprune.search.pareto import front_records
from autoprune.search.records import INTERRUPTED, TrialRecord
from autoprune.search.resume import INTERRUPTED_ATTR, mark_interrupted
from autoprune.search.samplers import CONSTRAINTS_ATTR, Constraints
from autoprune.search.space import PolicySpace
from autoprune.stores import optuna_storage
from autoprune.training import no_guard

METRICS = ["accuracy", "latency_ms"]
# Intermediate results during fine-tuning (never mistaken for a finished trial's metrics).
EPOCH_KEY, EPOCH_ACCURACY_KEY, EPOCH_LATENCY_KEY = "epoch", "epoch_accuracy", "epoch_latency_ms"
MODES = ["max", "min"]
TRIAL_METRICS = ("accuracy", "latency_ms", "latency_p90_ms", "latency_cv", "speedup", "params",
                 "nonzero_params", "sparsity", "macs", "size_mb")


class StudySearch(OptunaSearch):
    """OptunaSearch that never leaves stale values behind, and knows the study's constraints.

    A trial that errored, reported nothing, or reported a non-finite objective is told to
    Optuna as FAIL (plain OptunaSearch would keep earlier values as COMPLETE, or leave the
    trial RUNNING when Optuna rejects a NaN). A trial stopped early is told as PRUNED. A
    completed trial carries its constraint values (user attribute `constraints`) for the
    samplers' constraints_func.
    """

    def __init__(self, *args: Any, constraints: Constraints, stopper: EarlyStop,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.constraints = constraints
        self.stopper = stopper

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        values = [None if result is None else result.get(m) for m in METRICS]
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
        super().on_trial_complete(trial_id, result, error)

    def optuna_number(self, trial_id: str) -> int:
        return self._ot_trials[trial_id].number


class EarlyStop(tune.Stopper):
    """Stops a trial halfway through its fine-tuning when it cannot reach the front.

    Trials report their validation accuracy after each epoch, with the latency already
    measured (it does not depend on the weights). At the halfway epoch a trial is compared
    like with like: it stops when a finished trial at least as fast was more than `margin`
    more accurate at that same epoch. Runs on the driver.
    """

    def __init__(self, enabled: bool, margin: float, epochs: int) -> None:
        self.enabled = enabled and epochs >= 2
        self.margin = margin
        self.check_epoch = max(epochs // 2, 1)
        self.epochs = epochs
        self.midway: dict[str, float] = {}  # trial id -> accuracy at the check epoch
        self.finished: list[tuple[float, float]] = []  # (accuracy midway, latency_ms)
        self.stopped: dict[str, str] = {}  # trial id -> why
        self.gave_up: str | None = None  # why the whole study stops (set by the driver)

    def __call__(self, trial_id: str, result: dict) -> bool:
        if not self.enabled or result.get(EPOCH_KEY) != self.check_epoch:
            return False
        accuracy, latency = result[EPOCH_ACCURACY_KEY], result[EPOCH_LATENCY_KEY]
        self.midway[trial_id] = accuracy
        better = [(a, lat) for a, lat in self.finished
                  if lat <= latency and a > accuracy + self.margin]
        if not better:
            return False
        a, lat = max(better)
        self.stopped[trial_id] = (
            f"after {self.check_epoch}/{self.epochs} epochs acc {100 * accuracy:.2f}% at "
            f"{latency:.3f} ms; a finished trial at least as fast had {100 * a:.2f}% then")
        return True

    def finish(self, trial_id: str, latency_ms: float) -> None:
        """A trial completed: it becomes a reference for the trials after it."""
        if trial_id in self.midway:
            self.finished.append((self.midway[trial_id], latency_ms))

    def stop_all(self) -> bool:
        return self.gave_up is not None


@dataclass
class LatencyPlan:
    """Where a study's latencies come from."""

    source: str  # "measured" or "predicted"
    where: str
    bench: Any = None
    gate: Any = None
    node: str = ""  # Ray node id of the bench, when measured

    def backend(self, profile: HardwareProfile, input_shape: Sequence[int]) -> LatencyBackend:
        if self.bench is not None:
            return BenchLatency(self.bench, profile.measure.timeout_s, profile.measure.attempts)
        return PredictedLatency(profile, input_shape)


def _quiet_ray() -> None:
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "0")
    # Results during fine-tuning carry epoch_* keys, not the objectives.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    # Idle workers started with the driver import Ray and torch for seconds: exactly when the
    # base model's latency is measured. Tune starts the workers it needs itself.
    os.environ.setdefault("RAY_prestart_worker_first_driver", "0")
    for name in ("ray", "ray.train", "ray.air"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # Tune logs every failed trial's full traceback; the study reports each failure itself,
    # in one line, and keeps the traceback in the trial's error file.
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def check_ray_address(address: str | None, timeout_s: float = 5.0) -> None:
    """Fail fast with UserError when `ray.address` names a host:port that does not answer.

    ray.init itself retries an unreachable head for minutes before giving up.
    """
    if not address or address in ("auto", "local"):
        return
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"ray.address {address!r} must be 'auto', host:port or ray://host:port")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UserError(f"ray.address {address} cannot be reached ({exc.strerror or exc}); "
                        "start the head with `ray start --head` or leave ray.address unset"
                        ) from exc


def start_ray(cfg: RayConfig) -> None:
    """Start a local Ray, or join the cluster at `ray.address`; raises UserError if unreachable."""
    _quiet_ray()
    if ray.is_initialized():
        return
    options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR,
                               "include_dashboard": False, "configure_logging": True}
    if cfg.address:
        options["address"] = cfg.address
    else:
        # "local" always starts a private instance; ray.init() alone would join any cluster
        # that `ray start` left running on this machine.
        options["address"] = "local"
        options["num_cpus"] = cfg.num_cpus
        options["object_store_memory"] = 256 * 1024 * 1024
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"ray.address {cfg.address or 'local'} cannot be reached: {first}"
                        ) from exc
    _quiet_ray()


def plan_latency(profile: HardwareProfile, input_shape: Sequence[int]) -> LatencyPlan:
    """Create the bench (and core gate) the profile needs, or choose the latency model."""
    resource = profile.ray_resource
    available = ray.cluster_resources().get(resource, 0) if resource else 0
    if profile.mode == "predict" or (profile.mode == "auto" and available < 1):
        why = f"no Ray node advertises the resource '{resource}'" if resource else "mode=predict"
        return LatencyPlan("predicted", f"latency model of {profile.description} ({why})")
    if resource:
        if available < 1:
            raise UserError(f"hardware={profile.name} measures on a Ray node with resource "
                            f"'{resource}', and the cluster has none")
        # Restarted if it dies (a crashed driver library); a hung one is restarted by its
        # callers (BenchLatency).
        bench = Bench.options(resources={resource: 1}, max_restarts=-1,
                                  max_task_retries=-1).remote(
            profile, input_shape, None)
        node = _bench_node(bench, profile)
        return LatencyPlan("measured", f"Ray node {node[:12]} advertising '{resource}'", bench,
                           node=node)
    pin = _here()
    gate_name = f"autoprune-core-gate-{os.getpid()}-{time.time_ns()}"
    gate = CoreGate.options(scheduling_strategy=pin, name=gate_name).remote()
    bench = Bench.options(scheduling_strategy=pin, max_restarts=-1,
                                  max_task_retries=-1).remote(
        profile, input_shape, gate_name)
    return LatencyPlan("measured", f"this machine ({profile.description}, "
                                   f"{profile.threads} thread(s), training paused meanwhile)",
                       bench, gate, node=_bench_node(bench, profile))


def _bench_node(bench: Any, profile: HardwareProfile) -> str:
    """The Ray node the bench started on; StudyFailed when it does not start in time."""
    try:
        return ray.get(bench.node_id.remote(), timeout=profile.measure.timeout_s)
    except (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError) as exc:
        raise StudyFailed(f"the latency bench for hardware={profile.name} did not start within "
                          f"{profile.measure.timeout_s:g} s ({type(exc).__name__}); check the "
                          "device's Ray node") from exc


@ray.remote(num_cpus=0)
class WeightStore:
    """Fine-tuned weights of the trials that can still reach the front, held by the driver.

    Trials may run on other nodes, whose files the driver cannot read; the object store
    brings their weights here instead. Dominated trials can never rejoin the front, so their
    weights are dropped as soon as they are.
    """

    def __init__(self) -> None:
        self.states: dict[str, dict[str, torch.Tensor]] = {}

    def put(self, key: str, state: dict[str, torch.Tensor]) -> None:
        self.states[key] = state

    def get(self, key: str) -> dict[str, torch.Tensor]:
        return self.states[key]

    def drop(self, keys: list[str]) -> None:
        for key in keys:
            self.states.pop(key, None)


def _trainable(config: dict[str, Any], *, base_model: nn.Module, groups: list[PrunableGroup],
               data: DataSplits, settings: TrialSettings, space: PolicySpace,
               profile: HardwareProfile, plan: LatencyPlan, threads: int, store: Any) -> None:
    torch.set_num_threads(threads)
    policy = Policy.from_params(space.complete(config))
    trial_id = tune.get_context().get_trial_id()
    guard = TrainingGuard(plan.gate, trial_id) if plan.gate is not None else no_guard

    def progress(epoch: int, accuracy: float, latency: Any) -> None:
        tune.report({EPOCH_KEY: epoch, EPOCH_ACCURACY_KEY: accuracy,
                     EPOCH_LATENCY_KEY: latency.median_ms})

    result = run_trial(policy, base_model, groups, data, settings,
                       plan.backend(profile, data.input_shape), guard, progress)
    # The float weights: an int8 model is rebuilt from them and the same calibration data.
    ray.get(store.put.remote(trial_id, result.model.state_dict()))
    tune.report({**result.metrics(), "latency_source": result.latency.source})


def _error_line(trial: Any) -> str:
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


WORKER_DIED = ("WorkerDied: the trial's worker process died (killed, or out of memory) "
               "before it reported a result")


class _StudyCallback(tune.Callback):
    """Turns finished Tune trials into TrialRecords for the reporters (driver side).

    It also watches the latency device: when `give_up_after` trials in a row could not be
    measured, the study stops (the device hung, died or left) instead of failing every
    remaining trial the same way.
    """

    def __init__(self, searcher: StudySearch, space: PolicySpace, plan: LatencyPlan,
                 give_up_after: int, store: Any, on_record: Callable[[TrialRecord], None]
                 ) -> None:
        self.searcher = searcher
        self.space = space
        self.latency_source = plan.source
        self.gate = plan.gate
        self.give_up_after = give_up_after
        self.unmeasured = 0  # trials in a row the bench could not measure
        self.store = store
        self.on_record = on_record
        self.records: list[TrialRecord] = []

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
        if record.state == "complete":
            self.searcher.stopper.finish(record.weights_key, record.metrics["latency_ms"])
            front = {id(r) for r in front_records(self.records)}
            # Only completed trials off the (feasible) front: weights of trials still running
            # stay.
            self.store.drop.remote([r.weights_key for r in self.records
                                    if r.state == "complete" and id(r) not in front])
        self.on_record(record)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        params = self.space.complete(dict(trial.config))
        number = self.searcher.optuna_number(trial.trial_id)
        values = [result.get(m) for m in METRICS]
        why = self.searcher.stopper.stopped.get(trial.trial_id)
        if why is not None:
            metrics = {"accuracy": float(result[EPOCH_ACCURACY_KEY]),
                       "latency_ms": float(result[EPOCH_LATENCY_KEY]),
                       "epochs": float(result[EPOCH_KEY])}
            self._emit(TrialRecord(number, params, "stopped", metrics, error=why,
                                   latency_source=self.latency_source,
                                   summary=Policy.from_params(params).summary()))
            return
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            error = "no finite result reported" if self.searcher.stopper.gave_up is None else \
                f"{INTERRUPTED}: the study stopped before this trial finished"
            self._emit(TrialRecord(number, params, "failed", error=error,
                                   latency_source=self.latency_source,
                                   summary=Policy.from_params(params).summary()))
            return
        metrics = {k: float(result[k]) for k in TRIAL_METRICS}
        policy = Policy.from_params(params)
        self._emit(TrialRecord(number, params, "complete", metrics,
                               latency_source=str(result.get("latency_source", "")),
                               summary=policy.summary(), strategies=policy.used(),
                               weights_key=trial.trial_id,
                               feasible=self.searcher.constraints.met(*values)))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self.gate is not None:  # a worker that died may have held the core gate
            self.gate.drop.remote(trial.trial_id)
        params = self.space.complete(dict(trial.config))
        self._emit(TrialRecord(self.searcher.optuna_number(trial.trial_id), params, "failed",
                               error=_error_line(trial), latency_source=self.latency_source,
                               summary=Policy.from_params(params).summary()))


def run_trials(
    *,
    study_name: str,
    search: SearchConfig,
    space: PolicySpace,
    base_model: nn.Module,
    groups: list[PrunableGroup],
    data: DataSplits,
    settings: TrialSettings,
    profile: HardwareProfile,
    plan: LatencyPlan,
    cpus_per_trial: int,
    storage_path: Path,
    on_record: Callable[[TrialRecord], None],
    sampler: optuna.samplers.BaseSampler,
    constraints: Constraints,
    seed_points: Sequence[dict[str, Any]] = (),
) -> StudyRun:
    """Run the study's trials under Ray Tune; returns the records in finish order.

    `seed_points` are params tried first (Optuna's enqueue_trial, through Ray's
    points_to_evaluate)."""
    storage = optuna_storage(search.storage)
    store = WeightStore.options(scheduling_strategy=_here()).remote()
    stopper = EarlyStop(search.early_stop, search.early_stop_margin, settings.finetune.epochs)
    searcher = StudySearch(
        space=space, metric=METRICS, mode=MODES, sampler=sampler,
        study_name=study_name, storage=storage, points_to_evaluate=list(seed_points) or None,
        constraints=constraints, stopper=stopper,
    )
    callback = _StudyCallback(searcher, space, plan, profile.measure.give_up_after, store,
                              on_record)
    trainable = tune.with_parameters(
        _trainable, base_model=base_model, groups=list(groups), data=data, settings=settings,
        space=space, profile=profile, plan=plan, threads=cpus_per_trial, store=store,
    )
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": cpus_per_trial}),
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=search.n_trials,
                                    max_concurrent_trials=search.concurrency,
                                    reuse_actors=True),
        run_config=tune.RunConfig(
            name=study_name, storage_path=str(storage_path.resolve()), verbose=0,
            callbacks=[callback], failure_config=tune.FailureConfig(max_failures=0),
            stop=stopper,
        ),
    )
    # Ray Tune prints its own experiment banner and tables; the study prints its progress.
    with contextlib.redirect_stdout(io.StringIO()):
        tuner.fit()
    # Trials still in flight when Tune stopped (Ctrl-C, SIGTERM) must not stay RUNNING.
    mark_interrupted(storage, study_name)
    return StudyRun(callback.records, store, stopper.gave_up)


@dataclass
class StudyRun:
    """The records of a study's trials and access to the front's fine-tuned weights."""

    records: list[TrialRecord]
    store: Any
    gave_up: str | None = None  # why the study stopped before its budget, if it did

    def weights(self, record: TrialRecord) -> dict[str, torch.Tensor]:
        """Return the state_dict of a completed trial on the front (valid until Ray stops)."""
        return ray.get(self.store.get.remote(record.weights_key))


def _here() -> Any:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(),
                                          soft=False)
