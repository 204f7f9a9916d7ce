"""One study from settings to MLflow front: `run_study`, what `python -m autoprune search`
runs (and what a user calls from Python)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml

from autoprune import __version__, specs
from autoprune.config import Settings
from autoprune.errors import StudyFailed, TrialFailed, UserError
from autoprune.hardware.bench import BenchUnavailable
from autoprune.hardware.latency import settled_latency
from autoprune.search.adaptive import describe_learnt
from autoprune.search.early_stop import rung_steps
from autoprune.search.objective import TrialSettings, int8_inputs
from autoprune.search.records import INTERRUPTED
from autoprune.search.reference import Reference
from autoprune.study.front import rebuild, report_front, say
from autoprune.study.prepare import Prepared, finetuned_reference, prepare, reference
from autoprune.study.provenance import git_commit, package_versions
from autoprune.study.resumed import find_resumed, repair
from autoprune.study.retime import retime
from autoprune.study.space import Plan, plan_search
from autoprune.study.timing import StudyClock, breakdown, describe

# Where a trial that may be retried hands out what resumes its fine-tune, as fractions of
# its steps: once, halfway (each checkpoint is a round trip to the driver and a copy).
CHECKPOINTS = (0.5,)


def trial_settings(settings: Settings, base_latency_ms: float = math.nan) -> TrialSettings:
    ft = settings.finetune
    checks = rung_steps(settings.search.rungs, ft.steps) if settings.search.early_stop else ()
    return TrialSettings(prune=specs.prune_settings(settings),
                         finetune=specs.train_spec(settings),
                         bn_batches=ft.bn_recalibration_batches, base_latency_ms=base_latency_ms,
                         schedule_steps=settings.pruning.schedule_steps,
                         schedule_finetune_steps=settings.pruning.schedule_finetune_steps,
                         check_steps=checks,
                         checkpoint_steps=rung_steps(CHECKPOINTS, ft.steps)
                         if settings.search.max_failures else ())


def _checks(settings: Settings) -> None:
    """Fail fast, before anything is written, on stores and addresses that do not work."""
    from autoprune.search import runner
    from autoprune.search.samplers import make_sampler
    from autoprune.tracking.mlflow import check_reachable

    check_reachable(settings.tracking.uri)
    runner.check_ray_address(settings.ray.address)
    cache = Path(settings.cache_dir).expanduser()
    if cache.exists() and not cache.is_dir():
        raise UserError(f"cache_dir {settings.cache_dir} is a file; point it at a folder")
    make_sampler(settings.search, settings.seed)  # bad sampler options fail here, not later
    ray = settings.ray
    if ray.address is None and ray.gpus_per_trial > 0:  # a local Ray: its GPUs are known now
        gpus = ray.num_gpus if ray.num_gpus is not None else torch.cuda.device_count()
        if ray.gpus_per_trial > gpus:
            raise UserError(f"ray.gpus_per_trial={ray.gpus_per_trial:g}, but the Ray cluster "
                            f"has {gpus:g} GPUs; use at most that, or 0 to train on CPUs")


def _finetuned(prepared: Prepared, settings: Settings, previous: Any) -> float | None:
    """The like-for-like reference: read back when resuming, else fine-tuned now."""
    name = f"base_{prepared.task.metric}_finetuned"
    if previous is not None and name in previous.data.metrics:
        return previous.data.metrics[name]
    if settings.finetune.steps < 1:
        return None
    try:
        return finetuned_reference(prepared, trial_settings(settings), say)
    except TrialFailed as exc:
        say(f"the unpruned base did not fine-tune like a trial ({exc}); drops are measured "
            "from the base model alone")
        return None


def run_study(settings: Settings, output_dir: str) -> str:
    """Run one study and return its MLflow run id; see the README for what lands where."""
    from autoprune.hardware.calibrate import calibrated
    from autoprune.search import runner
    from autoprune.search.latency_plan import plan_latency
    from autoprune.signals import stop_on_sigterm

    clock = StudyClock()
    stop_on_sigterm()
    _checks(settings)
    previous, resumed_name = find_resumed(settings)
    torch.manual_seed(settings.seed)
    with clock.stage("base"):
        prepared = prepare(settings, say)
    with clock.stage("reference"):
        finetuned = _finetuned(prepared, settings, previous)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    study_name = resumed_name or f"{settings.study_name}-{stamp}-{secrets.token_hex(2)}"
    profile, calibration_line = calibrated(settings.hardware, settings.cache_dir)
    runner.start_ray(settings.ray)
    stop_on_sigterm()  # again: ray.init replaced the handler with its own
    tracker = None
    try:
        plan = plan_latency(profile, prepared.example)
        say(f"latency: PREDICTED, not measured: {plan.where}; {calibration_line}"
            if plan.source == "predicted" else f"latency: measured on {plan.where}")
        _check_int8(settings, plan, profile)
        try:
            base_latency = settled_latency(plan.backend(profile, prepared.example),
                                           prepared.base.model)
        except BenchUnavailable as exc:
            raise StudyFailed(f"the latency device did not answer when timing the base model: "
                              f"{exc}; check hardware={profile.name} and its node") from exc
        plan.learn(prepared.base.model, profile, prepared.example, base_latency.median_ms)
        base = reference(prepared, base_latency.median_ms, finetuned)
        _announce(study_name, prepared, base, base_latency)
        tracker = _tracker(settings, prepared, base, base_latency, plan, study_name, previous)
        # Speedups of a resumed study stay relative to the base latency it first measured.
        if previous is not None:
            base = dataclasses.replace(base, latency_ms=previous.data.metrics.get(
                "base_latency_ms", base.latency_ms))
        _search(settings, prepared, base, plan, profile, tracker, study_name, previous,
                output_dir, clock)
        tracker.finish("FINISHED")
        return tracker.run_id
    except BaseException:
        if tracker is not None:
            from autoprune.signals import received_signal

            interrupted = sys.exc_info()[0] is KeyboardInterrupt
            if interrupted:
                tracker.client.set_tag(tracker.run_id, "interrupted", received_signal())
            tracker.finish("KILLED" if interrupted else "FAILED")
        raise
    finally:
        import ray

        ray.shutdown()


def _check_int8(settings: Settings, plan: Any, profile: Any) -> None:
    if (plan.source == "measured" and "int8" in settings.pruning.quantize
            and not profile.device.startswith("cpu")):
        raise UserError(f"pruning.quantize int8 is measured with PyTorch's CPU kernels; "
                        f"hardware={profile.name} measures on {profile.device}: use "
                        "pruning.quantize=[none] or hardware.mode=predict")


def _announce(study_name: str, prepared: Prepared, base: Reference, latency: Any) -> None:
    objective = base.objective
    twin = "" if base.finetuned is None else \
        f" ({objective.format(base.finetuned)} fine-tuned like a trial)"
    say(f"study {study_name}: base model ({prepared.base.source}) val {objective.metric} "
        f"{objective.format(base.metric)}{twin}, latency {latency.median_ms:.3f} ms "
        f"(p90 {latency.p90_ms:.3f}, cv {100 * latency.cv:.1f}%, {latency.source}), "
        f"{len(prepared.groups)} prunable groups")


def _tracker(settings: Settings, prepared: Prepared, base: Reference, latency: Any,
             plan: Any, study_name: str, previous: Any) -> Any:
    """The study's MLflow run: a new one with its tags, metrics and config, or the resumed."""
    from autoprune.tracking.datasets import split_inputs
    from autoprune.tracking.mlflow import StudyTracker

    tracker = StudyTracker(settings.tracking.uri, settings.tracking.experiment,
                           prepared.task.objective, settings.tracking.system_metrics)
    if previous is not None:
        tracker.resume(previous.info.run_id)
        return tracker
    tracker.start_study(study_name, settings.hardware.name, settings.raw, {
        "latency_source": plan.source, "latency_node": plan.node or "none",
        **{f"device.{key}": value for key, value in plan.device_state.items()},
        "latency_device": latency.device, "optuna_study": study_name,
        "optuna_storage": settings.search.storage, "autoprune_version": __version__,
        "versions": package_versions(), "git_commit": git_commit(), "task": settings.task.name,
        **({"reproduces": settings.raw["reproduces"]} if settings.raw.get("reproduces") else {}),
        "base_model": prepared.base.path, "mlflow.note.content":
            f"autoprune study on {settings.hardware.description}; filter trials with "
            "tags.pareto = \"true\" for the front."})
    tracker.log_inputs(split_inputs(settings.data, prepared.workload.data))
    stats = prepared.stats
    tracker.log_metrics({
        **base.metrics(), "base_latency_p90_ms": latency.p90_ms, "base_latency_cv": latency.cv,
        "base_params": stats["params"], "base_macs": stats["macs"],
        "base_size_mb": stats["size_mb"], "prunable_groups": len(prepared.groups),
        "rejected_groups": len(prepared.rejected)})
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "config.yaml").write_text(yaml.safe_dump(settings.raw, sort_keys=False))
        tracker.log_artifact(str(Path(folder) / "config.yaml"))
    return tracker


def _search(settings: Settings, prepared: Prepared, base: Reference, plan: Any, profile: Any,
            tracker: Any, study_name: str, previous: Any, output_dir: str,
            clock: StudyClock) -> None:
    """The trials (the remaining ones of a resumed study), then the front."""
    from autoprune.search import runner
    from autoprune.search.resume import AcrossRuns, Retrain
    from autoprune.search.trainable import TrialContext
    from autoprune.terminal import Progress

    store = runner.weight_store()  # warming up while the search is planned
    search_plan: Plan = plan_search(settings, prepared, base, profile, say)
    budget, done, earlier = settings.search.n_trials, 0, []
    seed_points = search_plan.seed_points
    if previous is not None:
        done, earlier = repair(tracker, study_name, previous, search_plan.space,
                               prepared.task.metric)
        seed_points = []  # tried the first time
        say(f"{done} of {budget} trials done; {max(budget - done, 0)} to go")
    progress = Progress(budget, base.objective, already=done,
                        concurrency=settings.search.concurrency)

    def on_record(record: Any) -> None:
        tracker.log_trial(record, study_name)
        progress.update(record)

    settings_now = trial_settings(settings, base.latency_ms)
    context = TrialContext(prepared.base.model, prepared.groups, settings.data, prepared.task,
                           prepared.workload.loading, settings_now, search_plan.space, profile,
                           plan, settings.ray.cpus_per_trial, prepared.example)
    with clock.stage("trials"):
        study = runner.StudyRun([], None) if done >= budget else runner.run_trials(
            study_name=study_name,
            search=dataclasses.replace(settings.search, n_trials=budget - done),
            context=context, cpus_per_trial=settings.ray.cpus_per_trial,
            gpus_per_trial=settings.ray.gpus_per_trial, storage_path=Path(output_dir) / "ray",
            on_record=on_record, sampler=search_plan.sampler,
            constraints=search_plan.constraints, seed_points=seed_points,
            on_progress=progress.running,
            on_start=lambda number: tracker.start_trial(number, study_name), store=store)
    progress.close()
    # Trials in flight when the study stopped (Ctrl-C, SIGTERM, a device that left).
    tracker.close_open_trials(f"{INTERRUPTED}: the study stopped before this trial finished")
    retrain = Retrain(prepared.base.model, prepared.groups, prepared.workload, settings_now,
                      settings.ray.cpus_per_trial, say)
    with clock.stage("front"):
        _front(settings, prepared, base, plan, profile, tracker, study_name,
               AcrossRuns(earlier + study.records, study, retrain), previous, clock)
    slots = min(settings.search.concurrency, max(budget - done, 1))
    times = breakdown(clock, study.records, slots)
    learnt = plan.learnt()
    tracker.log_metrics({**times, **learnt})
    say(describe(times, slots))
    if learnt:
        say(describe_learnt(learnt))
    _outcome(study, done, budget)


def _front(settings: Settings, prepared: Prepared, base: Reference, plan: Any, profile: Any,
           tracker: Any, study_name: str, across: Any, previous: Any,
           clock: StudyClock) -> None:
    """Time the front again (measured latency only: a prediction does not vary; a resumed
    study's speedups stay relative to its first base time; not when the device was lost),
    then score, export and log it."""
    models = {}
    if previous is None and plan.source == "measured" and across.study.gave_up is None:
        base, models = retime(plan.backend(profile, prepared.example), prepared.base.model,
                              base, across.study.records, lambda r: rebuild(
                                  r, across.weights(r), prepared.base.model, prepared.groups,
                                  prepared.workload, settings),
                              int8_inputs(prepared.workload), tracker, say)
    report_front(across, prepared.base.model, prepared.groups, prepared.workload, settings,
                 tracker, study_name, base, clock.started, models)


def _outcome(study: Any, done: int, budget: int) -> None:
    """Raise when the study gave up, was interrupted, or every trial failed."""
    records = study.records
    finished = done + sum(not r.error.startswith(INTERRUPTED) for r in records)
    if study.gave_up is not None:
        raise StudyFailed(f"{study.gave_up}; stopped after {finished} of {budget} trials, "
                          "the partial front is logged; check the device, then run the same "
                          "command with resume=true")
    if finished < budget:
        say(f"interrupted after {finished} of {budget} trials; the partial front above "
            "is logged; run the same command with resume=true to finish it")
        raise KeyboardInterrupt
    failures = [r for r in records if r.state == "failed"]
    if records and len(failures) == len(records):
        raise StudyFailed(f"all {len(records)} trials failed; first: {failures[0].error}")
