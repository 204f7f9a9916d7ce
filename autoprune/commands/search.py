"""`python -m autoprune search`: one study from config to MLflow front."""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from autoprune import __version__
from autoprune.commands.front import first_line, prune_settings, report_front, say
from autoprune.config import Settings
from autoprune.data import load_data
from autoprune.errors import StudyFailed, UserError
from autoprune.hardware.bench import BenchUnavailable
from autoprune.hardware.latency import settled_latency
from autoprune.models import build_model
from autoprune.models.base import prepare_base_model
from autoprune.pruning import (
    STRATEGIES,
    check_groups,
    find_groups,
    model_stats,
)
from autoprune.search.amc import agent_factory
from autoprune.search.objective import (
    TrialSettings,
    calibration_batch,
    example_input,
)
from autoprune.search.records import INTERRUPTED, TrialRecord
from autoprune.search.samplers import make_sampler, resolve_constraints
from autoprune.search.sensitivity import measure_sensitivity
from autoprune.search.space import PolicySpace
from autoprune.signals import received_signal, stop_on_sigterm
from autoprune.terminal import Progress
from autoprune.training import TrainSpec, evaluate

SUMMARY = "search pruning policies on the accuracy/latency Pareto front"


VERSIONED = ("autoprune", "torch", "optuna", "ray", "mlflow", "hydra-core", "torch-pruning",
             "onnx", "onnxruntime", "numpy", "scikit-learn")


def package_versions() -> str:
    """`name=version` of the packages a study's results depend on, comma-separated."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in VERSIONED:
        try:
            found.append(f"{name}={version(name)}")
        except PackageNotFoundError:
            found.append(f"{name}=absent")
    return ",".join(found)


def git_commit() -> str:
    """The project checkout's commit (`+dirty` with uncommitted changes), or why there is none."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return "not a git checkout"
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "git unavailable"
    return head.stdout.strip() + ("+dirty" if dirty else "")


def _check_input(model: torch.nn.Module, x: torch.Tensor, num_classes: int) -> None:
    try:
        with torch.no_grad():
            out = model.eval()(x)
    except Exception as exc:
        first = " ".join(str(exc).split())[:200]
        raise UserError(f"input shape {tuple(x.shape[1:])} does not fit the model: {first}"
                        ) from exc
    if not isinstance(out, torch.Tensor) or out.shape != (1, num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UserError(f"the model returns {shape} for one input; expected (1, {num_classes})")


def _quantizable(quantize: tuple[str, ...], model: torch.nn.Module, data) -> tuple[str, ...]:
    """`quantize` without int8 when the model cannot be quantised (it is then named)."""
    from autoprune.pruning.quantize import quantize_int8

    if "int8" not in quantize:
        return quantize
    try:
        quantize_int8(model, data.x_train[:8])
    except Exception as exc:
        say(f"int8 quantisation is left out: {first_line(exc)}")
        return tuple(q for q in quantize if q != "int8") or ("none",)
    return quantize


def _prunable_groups(model: torch.nn.Module, settings: Settings, data,
                     x: torch.Tensor) -> list:
    """Return the model's prunable groups after checking it takes the data; raises UserError."""
    _check_input(model, x, data.num_classes)
    groups = find_groups(model, x, settings.pruning.ignore)
    if not groups:
        raise UserError(f"model {settings.model.label} has no prunable groups "
                        "(Conv2d/Linear layers besides the classifier)")
    return groups


def run(settings: Settings, output_dir: str) -> None:
    """Run one study; see the README for what lands where."""
    from autoprune.search import runner
    from autoprune.tracking.mlflow import StudyTracker, check_reachable

    started = time.monotonic()
    stop_on_sigterm()
    check_reachable(settings.tracking.uri)
    runner.check_ray_address(settings.ray.address)
    cache = Path(settings.cache_dir).expanduser()
    if cache.exists() and not cache.is_dir():
        raise UserError(f"cache_dir {settings.cache_dir} is a file; point it at a folder")
    make_sampler(settings.search, settings.seed)  # bad sampler options fail here, not later
    previous, resumed_name = _find_resumed(settings)
    torch.manual_seed(settings.seed)
    data = load_data(settings.data)
    x = example_input(data)
    if not settings.model.checkpoint:
        # An untrained copy has the same architecture: catch a model that cannot work
        # before spending minutes training it.
        _prunable_groups(build_model(settings.model), settings, data, x)
    base = prepare_base_model(settings.model, settings.data, settings.finetune, data,
                              settings.seed, settings.cache_dir, say)
    groups = _prunable_groups(base.model, settings, data, x)
    pruning = settings.pruning
    # The middle and both ends of the searched range: a cut that empties a branch or breaks
    # a head count shows up at one of them.
    extremes = sorted({pruning.ratio_min + pruning.ratio_step, 0.5, pruning.ratio_max})
    choices, rejected = check_groups(base.model, groups, pruning.strategies, x,
                                     prune_settings(settings), extremes)
    for key, reason in rejected.items():
        gid, _, strategy = key.rpartition("/")
        say(f"group {gid}: {strategy} is left out, it breaks the model ({reason})")
    if not choices:
        first = next(iter(rejected.values()), "no enabled strategy acts on its groups")
        raise UserError(f"no group of model {settings.model.label} can be pruned by "
                        f"{', '.join(settings.pruning.strategies)} without breaking it; "
                        f"first: {first}")
    groups = [g for g in groups if g.id in choices]
    used = {name for names in choices.values() for name in names}
    for name in settings.pruning.strategies:
        if name not in used:
            say(f"strategy {name} has nothing to act on in {settings.model.label} (it prunes "
                f"{', '.join(sorted(STRATEGIES[name].kinds))} groups)")
    base_accuracy = evaluate(base.model, data.x_val, data.y_val)
    base_test_accuracy = evaluate(base.model, data.x_test, data.y_test)
    base_stats = model_stats(base.model, x)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    study_name = resumed_name or f"{settings.study_name}-{stamp}-{secrets.token_hex(2)}"
    from autoprune.hardware.calibrate import calibrated

    profile, calibration = calibrated(settings.hardware, settings.cache_dir)

    runner.start_ray(settings.ray)
    stop_on_sigterm()  # again: ray.init replaced the handler with its own
    tracker = None
    try:
        plan = runner.plan_latency(profile, data.input_shape)
        if plan.source == "predicted":
            say(f"latency: PREDICTED, not measured: {plan.where}; {calibration}")
        else:
            say(f"latency: measured on {plan.where}")
        if (plan.source == "measured" and "int8" in settings.pruning.quantize
                and not profile.device.startswith("cpu")):
            raise UserError(f"pruning.quantize int8 is measured with PyTorch's CPU kernels; "
                            f"hardware={profile.name} measures on {profile.device}: use "
                            "pruning.quantize=[none] or hardware.mode=predict")
        backend = plan.backend(profile, data.input_shape)
        try:
            base_latency = settled_latency(backend, base.model)
        except BenchUnavailable as exc:
            raise StudyFailed(f"the latency device did not answer when timing the base model: "
                              f"{exc}; check hardware={profile.name} and its node") from exc
        say(f"study {study_name}: base model ({base.source}) val accuracy "
            f"{100 * base_accuracy:.2f}%, latency {base_latency.median_ms:.3f} ms "
             f"(p90 {base_latency.p90_ms:.3f}, cv {100 * base_latency.cv:.1f}%, "
             f"{base_latency.source}), {len(groups)} prunable groups")

        tracker = StudyTracker(settings.tracking.uri, settings.tracking.experiment)
        if previous is not None:
            tracker.resume(previous.info.run_id)
        else:
            tracker.start_study(study_name, profile.name, settings.raw, {
                "latency_source": plan.source, "latency_node": plan.node or "none",
                "latency_device": base_latency.device, "optuna_study": study_name,
                "optuna_storage": settings.search.storage, "autoprune_version": __version__,
                "versions": package_versions(), "git_commit": git_commit(),
                **({"reproduces": settings.raw["reproduces"]}
                   if settings.raw.get("reproduces") else {}),
                "base_model": base.path, "mlflow.note.content":
                    f"autoprune study on {profile.description}; filter trials with "
                    "tags.pareto = \"true\" for the front."})
            tracker.log_metrics({
                "base_accuracy": base_accuracy, "base_test_accuracy": base_test_accuracy,
                "base_latency_ms": base_latency.median_ms,
                "base_latency_p90_ms": base_latency.p90_ms, "base_latency_cv": base_latency.cv,
                "base_params": base_stats["params"], "base_macs": base_stats["macs"],
                "base_size_mb": base_stats["size_mb"], "prunable_groups": len(groups),
                "rejected_groups": len(rejected)})
            with tempfile.TemporaryDirectory() as folder:
                (Path(folder) / "config.yaml").write_text(
                    yaml.safe_dump(settings.raw, sort_keys=False))
                tracker.log_artifact(str(Path(folder) / "config.yaml"))
        # Speedups of a resumed study stay relative to the base latency it first measured.
        base_ms = base_latency.median_ms if previous is None else \
            previous.data.metrics.get("base_latency_ms", base_latency.median_ms)

        search = settings.search
        constraints = resolve_constraints(search, base_accuracy)
        if constraints:
            say(f"constraints: {constraints.describe()}; the front holds only trials that "
                "meet them")
        ft = settings.finetune
        seed_points: list[dict] = []
        caps: dict[str, float] = {}
        if search.sensitivity:
            say(f"sensitivity warm start: {len(groups)} groups x "
                f"{len(search.sensitivity_ratios)} ratios, no fine-tuning")
            sensitivity = measure_sensitivity(
                base.model, groups, choices, data, prune_settings(settings),
                search.sensitivity_ratios, ft.bn_recalibration_batches, ft.batch_size,
                settings.seed, calibration_batch(data), say)
            caps = sensitivity.caps(search.sensitivity_max_drop)
            tolerated = (search.sensitivity_max_drop / 4, search.sensitivity_max_drop / 2)
            seed_ratio_sets = [sensitivity.seed_params(t, pruning.ratio_min) for t in tolerated]
        space = PolicySpace(choices, pruning.ratio_min, pruning.ratio_max, pruning.ratio_step,
                            pruning.schedules, _quantizable(pruning.quantize, base.model, data),
                            caps)
        if search.sensitivity:
            seed_points += [space.point(r) for r in seed_ratio_sets]
            if caps:
                say("ratio ranges narrowed: " + ", ".join(
                    f"{gid} <= {space.ratio_high(gid):g}" for gid in caps))
        seed_points += [space.uniform_point(r) for r in search.seed_ratios]
        agent = None
        if search.sampler == "amc":
            agent = agent_factory(base.model, groups, space, x, prune_settings(settings),
                                  profile, data.input_shape, base_ms,
                                  constraints.max_latency_ms)
        sampler = make_sampler(search, settings.seed, space=space, constraints=constraints,
                               agent=agent)
        trial_settings = TrialSettings(
            prune=prune_settings(settings),
            finetune=TrainSpec(ft.epochs, ft.lr, ft.batch_size, ft.momentum, ft.weight_decay,
                               settings.seed, ft.distill_alpha, ft.distill_temperature),
            bn_batches=ft.bn_recalibration_batches, base_latency_ms=base_ms,
            schedule_steps=pruning.schedule_steps, step_epochs=pruning.step_epochs)
        budget, done, earlier = search.n_trials, 0, []
        if previous is not None:
            done, earlier = _repair(tracker, study_name, previous, space)
            seed_points = []  # tried the first time
            say(f"{done} of {budget} trials done; {max(budget - done, 0)} to go")
        progress = Progress(budget, already=done)

        def on_record(record: TrialRecord) -> None:
            tracker.log_trial(record, study_name)
            progress.update(record)

        study = runner.StudyRun([], None) if done >= budget else runner.run_trials(
            study_name=study_name, search=dataclasses.replace(search, n_trials=budget - done),
            space=space,
            base_model=base.model, groups=groups, data=data, settings=trial_settings,
            profile=profile, plan=plan, cpus_per_trial=settings.ray.cpus_per_trial,
            storage_path=Path(output_dir) / "ray", on_record=on_record, sampler=sampler,
            constraints=constraints, seed_points=seed_points)
        records = study.records
        from autoprune.search.resume import AcrossRuns, Retrain

        retrain = Retrain(base.model, groups, data, trial_settings, settings.ray.cpus_per_trial,
                          say)
        report_front(AcrossRuns(earlier + records, study, retrain), base.model, groups, data,
                     settings, tracker, study_name,
                     (base_accuracy, base_ms, base_test_accuracy), started)
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
            reason = failures[0].error if failures else "no trial ran"
            raise StudyFailed(f"all {len(records)} trials failed; first: {reason}")
        tracker.finish("FINISHED")
    except BaseException:
        if tracker is not None:
            interrupted = sys.exc_info()[0] is KeyboardInterrupt
            if interrupted:
                tracker.client.set_tag(tracker.run_id, "interrupted", received_signal())
            tracker.finish("KILLED" if interrupted else "FAILED")
        raise
    finally:
        import ray

        ray.shutdown()


def _find_resumed(settings: Settings) -> tuple:
    """With `resume`, the MLflow study run and name to continue (UserError if none)."""
    value = settings.raw.get("resume")
    if value in (None, False) or str(value).lower() in ("false", "null", ""):
        return None, None
    from mlflow.tracking import MlflowClient

    from autoprune.search import resume
    from autoprune.stores import creating

    uri = settings.tracking.uri
    shown = str(value).lower() if isinstance(value, bool) else value
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).expanduser().exists():
        raise UserError(f"resume={shown}: no unfinished study named {settings.study_name}-* "
                        f"(there is no MLflow store at {uri} yet)")
    with creating(uri):
        client = MlflowClient(tracking_uri=uri)
    name, previous = resume.find_study(settings.search.storage, settings.study_name, value,
                                       client, settings.tracking.experiment)
    say(f"resuming study {name} (MLflow run {previous.info.run_id}, {previous.info.status})")
    return previous, name


def _repair(tracker, study_name: str, previous, space: PolicySpace) -> tuple[int, list]:
    """Repair what a stopped run left (RUNNING trials, trials MLflow missed); return the
    trials that count toward the budget and the earlier trials' records."""
    import optuna

    from autoprune.commands.report import study_records
    from autoprune.search import resume
    from autoprune.stores import optuna_storage

    storage = optuna_storage(resume.study_storage(previous))
    repaired = resume.mark_interrupted(storage, study_name)
    logged, _ = study_records(tracker.client, previous)
    backfilled = resume.backfill(tracker, study_name, storage, {r.number for r in logged}, space)
    if repaired or backfilled:
        say(f"repaired: {repaired} trials left RUNNING marked interrupted, {backfilled} "
            "finished trials added to MLflow")
    records, _ = study_records(tracker.client, tracker.client.get_run(previous.info.run_id))
    trials = optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False)
    return sum(resume.counts(t) for t in trials), records
