"""The end of a study: its Pareto front rebuilt, scored on the test split, exported, logged
and printed."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch
import yaml

from autoprune.config import Settings
from autoprune.pruning import Policy, PruneSettings, apply_policy, model_stats
from autoprune.pruning.criteria import NEEDS_GRADIENTS
from autoprune.search.objective import (
    CALIBRATION_SAMPLES,
    calibration_batch,
    deployed_model,
    example_input,
)
from autoprune.search.pareto import front_records
from autoprune.search.records import TrialRecord
from autoprune.terminal import front_table
from autoprune.training import evaluate


def say(message: str) -> None:
    print(message, flush=True)


def prune_settings(settings: Settings) -> PruneSettings:
    return PruneSettings(settings.hardware.alignment, settings.pruning.importance,
                         settings.pruning.ignore)


def rebuild(record: TrialRecord, state: dict, base: torch.nn.Module, groups: list,
             data, settings: Settings) -> torch.nn.Module:
    """The trial's float model: its policy re-applied to the base model, its weights loaded."""
    x = example_input(data)
    policy = Policy.from_params(record.params)
    model = apply_policy(base, policy, groups, x, prune_settings(settings),
                         calibration_batch(data)).model
    model.load_state_dict(state)
    return model.eval()


def export_trial(record: TrialRecord, model: torch.nn.Module, deployed: torch.nn.Module,
            base: torch.nn.Module, groups: list, data, settings: Settings, folder: Path) -> dict:
    """Write the trial's bundle, ONNX and TorchScript files; return what was checked."""
    from autoprune.export import (
        export_onnx,
        export_torchscript,
        onnx_difference,
        onnx_weights,
        save_pruned,
    )
    from autoprune.pruning.strategies.dynamic import is_gated

    policy = Policy.from_params(record.params)
    x = example_input(data)
    needs_batch = settings.pruning.importance in NEEDS_GRADIENTS
    save_pruned(folder / "pruned.pt", model, base_model=base, model_config=settings.model,
                input_shape=data.input_shape, groups=groups, policy=policy,
                prune=prune_settings(settings),
                prune_batch=calibration_batch(data) if needs_batch else None,
                calibration=data.x_train[:CALIBRATION_SAMPLES])
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
        checked["onnx_max_abs_diff"] = onnx_difference(folder / "model.onnx", model,
                                                       data.x_val[:64])
        checked.update(onnx_weights(folder / "model.onnx"))
    except Exception as exc:
        (folder / "model.onnx").unlink(missing_ok=True)
        checked["onnx_error"] = first_line(exc)
    for kind in ("torchscript", "onnx"):
        if f"{kind}_error" in checked:
            say(f"trial {record.number}: no {kind} export ({checked[f'{kind}_error']}); "
                "pruned.pt holds the model")
    return checked


def first_line(exc: Exception) -> str:
    text = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def report_front(study, base: torch.nn.Module, groups: list, data,
            settings: Settings, tracker, study_name: str, base_point: tuple[float, float, float],
            started: float) -> None:
    from autoprune.tracking.plots import plot_front_html, plot_front_png, write_front_csv

    records = study.records
    done = [r for r in records if r.state == "complete"]
    failed = sum(r.state == "failed" for r in records)
    stopped = [r for r in records if r.state == "stopped"]
    infeasible = sum(not r.feasible for r in done)
    front = front_records(records)
    test_accuracy = {}
    exports = []
    with tempfile.TemporaryDirectory() as folder:
        for record in front:
            model = rebuild(record, study.weights(record), base, groups, data, settings)
            deployed = deployed_model(model, Policy.from_params(record.params), data)
            test_accuracy[record.number] = evaluate(deployed, data.x_test, data.y_test)
            record.pareto = True
            tracker.mark_pareto(record, test_accuracy[record.number])
            target = Path(folder) / f"trial_{record.number:03d}"
            exports.append(export_trial(record, model, deployed, base, groups, data, settings,
                                   target))
            (target / "export.json").write_text(json.dumps(exports[-1], indent=2))
            tracker.log_trial_artifacts(record, str(target), "model")
    for record in records:  # an earlier run's front trial that no longer is one
        if record.pareto and all(record is not f for f in front) and record.run_id:
            tracker.client.set_tag(record.run_id, "pareto", "false")
            record.pareto = False
    tracker.log_metrics({"trials_complete": len(done), "trials_failed": failed,
                         "trials_stopped_early": len(stopped),
                         "trials_infeasible": infeasible, "pareto_size": len(front)})
    title = (f"{study_name}: {settings.model.label} on {settings.data.name}, "
             f"{settings.hardware.name}")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "config.yaml").write_text(yaml.safe_dump(settings.raw, sort_keys=False))
        tracker.log_artifact(str(root / "config.yaml"))
        pareto = root / "pareto"
        (pareto / "policies").mkdir(parents=True)
        if front:
            write_front_csv(front, test_accuracy, pareto / "pareto_front.csv")
            plot_front_png(records, front, base_point[:2], title, pareto / "pareto_front.png")
            plot_front_html(records, front, base_point[:2], title, pareto / "pareto_front.html")
        for record in front:
            policy = Policy.from_params(record.params)
            (pareto / "policies" / f"trial_{record.number:03d}.yaml").write_text(policy.to_yaml())
        (pareto / "exports.json").write_text(json.dumps(exports, indent=2))
        tracker.log_artifacts(str(pareto), "pareto")
    elapsed = time.monotonic() - started
    say("")
    source = front[0].latency_source if front else "-"
    say(f"Pareto front of {study_name}: {len(front)} trials; {len(done)} completed, "
        f"{failed} failed, {elapsed:.0f}s; latency {source}")
    if stopped:
        epochs = settings.finetune.epochs
        saved = sum(epochs - r.metrics.get("epochs", epochs) for r in stopped)
        say(f"stopped early: {len(stopped)} trials could not reach the front "
            f"({saved:.0f} of {epochs * (len(done) + len(stopped)):.0f} fine-tuning epochs "
             "saved)")
    if infeasible:
        say(f"outside the constraints: {infeasible} completed trials, left off the front")
    if front:
        say(front_table(front, test_accuracy, base_point))
    say(f"MLflow: {settings.tracking.uri}, experiment '{settings.tracking.experiment}', "
        f"run {tracker.run_id}; filter trials with tags.pareto = \"true\"")
    say(f"Optuna: study '{study_name}' in {settings.search.storage}")
