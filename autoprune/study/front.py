"""The end of a study: its Pareto front rebuilt, scored on the whole validation and test
splits, exported, logged and printed."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from autoprune import specs
from autoprune.config import Settings
from autoprune.pruning import Policy, apply_policy, model_stats
from autoprune.pruning.criteria import NEEDS_GRADIENTS
from autoprune.search.objective import calibration, deployed_model, int8_inputs
from autoprune.search.pareto import front_records
from autoprune.search.records import TrialRecord
from autoprune.search.reference import Reference
from autoprune.terminal import front_table
from autoprune.tracking.models import log_model
from autoprune.training import Compute, evaluate
from autoprune.workload import Workload


def say(message: str) -> None:
    print(message, flush=True)


def first_line(exc: Exception) -> str:
    text = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def rebuild(record: TrialRecord, state: dict, base: torch.nn.Module, groups: list,
            workload: Workload, settings: Settings) -> torch.nn.Module:
    """The trial's float model: its policy re-applied to the base model, its weights loaded."""
    policy = Policy.from_params(record.params)
    model = apply_policy(base, policy, groups, workload.example(),
                         specs.prune_settings(settings), calibration(workload)).model
    model.load_state_dict(state)
    return model.eval()


def export_trial(record: TrialRecord, model: torch.nn.Module, deployed: torch.nn.Module,
                 base: torch.nn.Module, groups: list, workload: Workload, settings: Settings,
                 folder: Path) -> dict:
    """Write the trial's bundle, ONNX and TorchScript files; return what was checked."""
    from autoprune.export import (
        export_onnx,
        export_torchscript,
        onnx_difference,
        onnx_weights,
        save_pruned,
    )
    from autoprune.pruning.strategies.gated_layers import is_gated

    policy = Policy.from_params(record.params)
    x = workload.example()
    needs_batch = settings.pruning.importance in NEEDS_GRADIENTS
    save_pruned(folder / "pruned.pt", model, base_model=base, model_config=settings.model,
                example=x, groups=groups, policy=policy, prune=specs.prune_settings(settings),
                prune_batch=calibration(workload) if needs_batch else None,
                calibration=int8_inputs(workload) if policy.quantize == "int8" else None)
    (folder / "policy.yaml").write_text(policy.to_yaml())
    stats = model_stats(model, x)
    checked: dict = {"trial": record.number, "params": stats["params"],
                     "nonzero_params": stats["nonzero_params"], "sparsity": stats["sparsity"]}
    # The bundle above always works (plain data); a tracer may not follow every model the
    # user brings: say so, and keep going.
    try:
        export_torchscript(deployed, x, folder / "model.torchscript.pt")
        checked["torchscript_precision"] = "int8" if policy.quantize == "int8" else "fp32"
    except Exception as exc:
        checked["torchscript_error"] = first_line(exc)
    try:
        export_onnx(model, x, folder / "model.onnx")
        checked["onnx_precision"] = "fp32"
        checked["onnx_batch"] = 1 if is_gated(model) else "dynamic"
        inputs = workload.task.inputs(workload.items(64))
        checked["onnx_max_abs_diff"] = onnx_difference(folder / "model.onnx", model, inputs)
        checked.update(onnx_weights(folder / "model.onnx"))
    except Exception as exc:
        (folder / "model.onnx").unlink(missing_ok=True)
        checked["onnx_error"] = first_line(exc)
    for kind in ("torchscript", "onnx"):
        if f"{kind}_error" in checked:
            say(f"trial {record.number}: no {kind} export ({checked[f'{kind}_error']}); "
                "pruned.pt holds the model")
    return checked


def _log_model(record: TrialRecord, deployed: torch.nn.Module, workload: Workload,
               checked: dict) -> None:
    """The front model as an MLflow model of its trial run; its URI (or why not) goes into
    `checked`."""
    try:
        checked["mlflow_model"] = log_model(record.run_id, deployed, workload.example())
    except Exception as exc:
        checked["mlflow_model_error"] = first_line(exc)
        say(f"trial {record.number}: no MLflow model ({first_line(exc)}); pruned.pt holds "
            "the model")


def final_scores(deployed: torch.nn.Module, workload: Workload, compute: Compute,
                 quantized: bool) -> dict[str, float]:
    """A front model's scores on the whole test split (and on the whole validation split
    when trials saw a subset of it), named `test_<metric>` and `val_full_<metric>`."""
    if quantized:  # PyTorch's int8 kernels run on the CPU
        compute = Compute("cpu", "fp32")
    name = workload.task.metric
    scores = {f"test_{name}": evaluate(deployed, workload, "test", False, compute)[name]}
    if workload.loading.eval_batches is not None:
        scores[f"val_full_{name}"] = evaluate(deployed, workload, "val", False, compute)[name]
    deployed.cpu()
    return scores


def report_front(study: Any, base: torch.nn.Module, groups: list, workload: Workload,
                 settings: Settings, tracker: Any, study_name: str, reference: Reference,
                 started: float, models: dict[int, torch.nn.Module] | None = None) -> None:
    """Score, export and log the front (`models`: front models already rebuilt, by trial
    number); print the summary and the table."""
    objective = reference.objective
    name = objective.metric
    records = study.records
    front = front_records(records, objective)
    scores: dict[int, dict[str, float]] = {}
    exports = []
    with tempfile.TemporaryDirectory() as folder:
        for record in front:
            model = (models or {}).get(record.number)
            if model is None:
                model = rebuild(record, study.weights(record), base, groups, workload, settings)
            policy = Policy.from_params(record.params)
            deployed = deployed_model(model, policy, workload)
            scores[record.number] = final_scores(deployed, workload,
                                                 specs.compute(settings.finetune),
                                                 policy.quantize == "int8")
            record.pareto = True
            tracker.mark_pareto(record, scores[record.number])
            target = Path(folder) / f"trial_{record.number:03d}"
            exports.append(export_trial(record, model, deployed, base, groups, workload,
                                        settings, target))
            if settings.tracking.log_models:
                _log_model(record, deployed, workload, exports[-1])
            (target / "export.json").write_text(json.dumps(exports[-1], indent=2))
            tracker.log_trial_artifacts(record, str(target), "model")
    for record in records:  # an earlier run's front trial that no longer is one
        if record.pareto and all(record is not f for f in front) and record.run_id:
            tracker.client.set_tag(record.run_id, "pareto", "false")
            record.pareto = False
    test = {n: s[f"test_{name}"] for n, s in scores.items()}
    full_val = {n: s[f"val_full_{name}"] for n, s in scores.items() if f"val_full_{name}" in s}
    _log_artifacts(records, front, test, reference, settings, tracker, study_name, exports)
    _summary(records, front, test, full_val, reference, settings, tracker, study_name,
             started)


def _log_artifacts(records: list, front: list, test: dict[int, float], reference: Reference,
                   settings: Settings, tracker: Any, study_name: str, exports: list) -> None:
    from autoprune.tracking.plots import plot_front_html, plot_front_png, write_front_csv

    done = [r for r in records if r.state == "complete"]
    tracker.log_metrics({"trials_complete": len(done),
                         "trials_failed": sum(r.state == "failed" for r in records),
                         "trials_stopped_early": sum(r.state == "stopped" for r in records),
                         "trials_infeasible": sum(not r.feasible for r in done),
                         "pareto_size": len(front)})
    title = (f"{study_name}: {settings.model.label} on {settings.data.name}, "
             f"{settings.hardware.name}")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "config.yaml").write_text(yaml.safe_dump(settings.raw, sort_keys=False))
        tracker.log_artifact(str(root / "config.yaml"))
        pareto = root / "pareto"
        (pareto / "policies").mkdir(parents=True)
        if front:
            write_front_csv(front, test, pareto / "pareto_front.csv", reference.objective)
            plot_front_png(records, front, reference, title, pareto / "pareto_front.png")
            plot_front_html(records, front, reference, title, pareto / "pareto_front.html")
        for record in front:
            policy = Policy.from_params(record.params)
            (pareto / "policies" / f"trial_{record.number:03d}.yaml").write_text(policy.to_yaml())
        (pareto / "exports.json").write_text(json.dumps(exports, indent=2))
        tracker.log_artifacts(str(pareto), "pareto")


def _summary(records: list, front: list, test: dict[int, float], full_val: dict[int, float],
             reference: Reference, settings: Settings, tracker: Any, study_name: str,
             started: float) -> None:
    done = [r for r in records if r.state == "complete"]
    stopped = [r for r in records if r.state == "stopped"]
    infeasible = sum(not r.feasible for r in done)
    say("")
    source = front[0].latency_source if front else "-"
    say(f"Pareto front of {study_name}: {len(front)} trials; {len(done)} completed, "
        f"{sum(r.state == 'failed' for r in records)} failed, "
        f"{time.monotonic() - started:.0f}s; latency {source}")
    steps = settings.finetune.steps
    full = steps * (len(done) + len(stopped))
    if full:
        tracker.log_metrics({
            "finetune_steps": sum(r.metrics.get("steps", steps) for r in done + stopped),
            "finetune_steps_full": full})
    if stopped:
        saved = sum(steps - r.metrics.get("steps", steps) for r in stopped)
        say(f"stopped early: {len(stopped)} trials could not reach the front "
            f"({saved:.0f} of {full:.0f} fine-tuning steps "
            "saved)")
    if infeasible:
        say(f"outside the constraints: {infeasible} completed trials, left off the front")
    if front:
        say(front_table(front, test, reference, full_val))
    say(f"MLflow: {settings.tracking.uri}, experiment '{settings.tracking.experiment}', "
        f"run {tracker.run_id}; filter trials with tags.pareto = \"true\"")
    say(f"Optuna: study '{study_name}' in {settings.search.storage}")
