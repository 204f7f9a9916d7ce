"""Ray Tune runner: trials in parallel, Optuna proposing policies, results to callbacks.

The driver owns everything shared: the Optuna study (inside StudySearch), the latency bench
and core gate actors, the weight store and the reporting callbacks. Workers only run the
trial function (`trainable.py`), building their own data from the config.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import ray
import torch
from ray import tune

import autoprune
from autoprune.config import RayConfig, SearchConfig
from autoprune.errors import UserError
from autoprune.search.callbacks import OnProgress, StudyCallback
from autoprune.search.early_stop import EarlyStop
from autoprune.search.latency_plan import here
from autoprune.search.records import TrialRecord
from autoprune.search.resume import mark_interrupted
from autoprune.search.samplers import Constraints
from autoprune.search.trainable import TrialContext, trainable
from autoprune.search.tune_search import StudySearch
from autoprune.search.weights import WeightStore
from autoprune.stores import optuna_storage


def _quiet_ray() -> None:
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "0")
    # Results during fine-tuning carry progress keys, not the objectives.
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


def job_environment(runtime_env: dict[str, Any] | None) -> dict[str, Any]:
    """The study's Ray runtime_env when it joins a cluster: the user's, with this package
    shipped to the nodes (py_modules) unless the user's lists its own."""
    env = dict(runtime_env or {})
    env.setdefault("py_modules", [str(Path(autoprune.__file__).resolve().parent)])
    return env


def start_ray(cfg: RayConfig) -> None:
    """Start a local Ray, or join the cluster at `ray.address`; raises UserError if unreachable."""
    _quiet_ray()
    if ray.is_initialized():
        return
    options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR,
                               "include_dashboard": False, "configure_logging": True}
    if cfg.address:
        options["address"] = cfg.address
        options["runtime_env"] = job_environment(cfg.runtime_env)
    else:
        # "local" always starts a private instance; ray.init() alone would join any cluster
        # that `ray start` left running on this machine.
        options["address"] = "local"
        options["num_cpus"] = cfg.num_cpus
        options["num_gpus"] = cfg.num_gpus
        if cfg.object_store_mb is not None:
            options["object_store_memory"] = cfg.object_store_mb * 1024 * 1024
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"ray.address {cfg.address or 'local'} cannot be reached: {first}"
                        ) from exc
    _quiet_ray()
    gpus = ray.cluster_resources().get("GPU", 0)
    if cfg.gpus_per_trial > gpus:
        raise UserError(f"ray.gpus_per_trial={cfg.gpus_per_trial:g}, but the Ray cluster has "
                        f"{gpus:g} GPUs; use at most that, or 0 to train on CPUs")


@dataclass
class StudyRun:
    """The records of a study's trials and access to the front's fine-tuned weights."""

    records: list[TrialRecord]
    store: Any
    gave_up: str | None = None  # why the study stopped before its budget, if it did

    def weights(self, record: TrialRecord) -> dict[str, torch.Tensor]:
        """Return the state_dict of a completed trial on the front (valid until Ray stops)."""
        return ray.get(self.store.get.remote(record.weights_key))


def weight_store() -> Any:
    """The driver's weight store, warmed up. The first tensor a fresh Ray worker receives costs
    it about a second (Ray sets up its serializers); one sent now, while the driver still
    prepares the search, keeps that second off the first finished trial's hand-over."""
    store = WeightStore.options(scheduling_strategy=here()).remote()
    store.put.remote("", {"": torch.zeros(1)})
    store.drop.remote([""])  # an actor runs one caller's calls in order
    return store


def run_trials(
    *,
    study_name: str,
    search: SearchConfig,
    context: TrialContext,
    cpus_per_trial: int,
    gpus_per_trial: float,
    storage_path: Path,
    on_record: Callable[[TrialRecord], None],
    sampler: optuna.samplers.BaseSampler,
    constraints: Constraints,
    seed_points: Sequence[dict[str, Any]] = (),
    on_progress: OnProgress | None = None,
    store: Any,
    on_start: Callable[[int], str] | None = None,
) -> StudyRun:
    """Run the study's trials under Ray Tune; returns the records in finish order.

    `seed_points` are params tried first (Optuna's enqueue_trial, through Ray's
    points_to_evaluate); `on_start(trial number)` returns the id of the trial's MLflow run,
    created as it starts (kept on the Optuna trial as the user attribute `mlflow_run_id`);
    `store` holds the front's weights (`weight_store()`)."""
    objective = context.task.objective
    storage = optuna_storage(search.storage)
    stopper = EarlyStop(search.early_stop, search.early_stop_margin,
                        context.settings.finetune.steps, objective, search.rungs,
                        search.early_stop_curves)
    searcher = StudySearch(
        space=context.space, metric=[objective.metric, "latency_ms"], mode=[objective.mode, "min"],
        sampler=sampler, study_name=study_name, storage=storage,
        points_to_evaluate=list(seed_points) or None, constraints=constraints, stopper=stopper,
    )
    callback = StudyCallback(searcher, context.space, context.plan,
                             context.profile.measure.give_up_after, store, on_record,
                             on_progress, errors=storage_path / study_name / "errors",
                             on_start=on_start)
    resources = {"cpu": cpus_per_trial, **({"gpu": gpus_per_trial} if gpus_per_trial else {})}
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(trainable, context=context, store=store),
                            resources),
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=search.n_trials,
                                    max_concurrent_trials=search.concurrency,
                                    reuse_actors=True),
        run_config=tune.RunConfig(
            name=study_name, storage_path=str(storage_path.resolve()), verbose=0,
            callbacks=[callback],
            # A trial whose worker died runs again from its last checkpoint (the trainable
            # reports its own failures instead of raising them, so those are not retried).
            failure_config=tune.FailureConfig(max_failures=search.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            stop=stopper,
        ),
    )
    # Ray Tune prints its own experiment banner and tables; the study prints its progress.
    with contextlib.redirect_stdout(io.StringIO()):
        tuner.fit()
    # Trials still in flight when Tune stopped (Ctrl-C, SIGTERM) must not stay RUNNING.
    mark_interrupted(storage, study_name)
    return StudyRun(callback.records, store, stopper.gave_up)
