"""`python -m autoprune apply`: one front model of a finished study, made ready to deploy.

Picks a trial of the study (by number, or by a rule), rebuilds its pruned model from the base
model with the study's own config, fine-tunes it for longer, scores it on the held-out test
split, exports it (TorchScript and ONNX), checks the ONNX file with ONNX Runtime (its test
accuracy and latency), and logs everything to MLflow as a run nested in the study, with the
model logged as an MLflow model (registered under `register` when given).
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path
from typing import Any

import torch

from autoprune.config import Settings, parse_yaml, settings_from_dict
from autoprune.errors import UserError
from autoprune.search.records import TrialRecord

SUMMARY = "rebuild, fine-tune longer, test, export and log one trial of a finished study"
RULES = ("knee", "best_under_latency", "fastest_above_accuracy")


def choose(front: list[TrialRecord], records: list[TrialRecord], trial: int | None, rule: str,
           max_latency_ms: float | None, min_accuracy: float | None) -> TrialRecord:
    """The trial to apply: `trial` by number, else the rule's pick from the front."""
    if trial is not None:
        found = [r for r in records if r.number == trial and r.state == "complete"]
        if not found:
            done = sorted(r.number for r in records if r.state == "complete")
            raise UserError(f"the study has no completed trial {trial}; completed: "
                            f"{', '.join(map(str, done)) or 'none'}")
        return found[0]
    if not front:
        raise UserError("the study's front is empty: nothing to apply")
    if rule == "best_under_latency":
        if max_latency_ms is None:
            raise UserError("rule=best_under_latency needs max_latency_ms=<ms>")
        within = [r for r in front if r.metrics["latency_ms"] <= max_latency_ms]
        if not within:
            raise UserError(f"no front trial is at or under {max_latency_ms} ms; the fastest "
                            f"takes {min(r.metrics['latency_ms'] for r in front):.4g} ms")
        return max(within, key=lambda r: r.metrics["accuracy"])
    if rule == "fastest_above_accuracy":
        if min_accuracy is None:
            raise UserError("rule=fastest_above_accuracy needs min_accuracy=<0..1>")
        above = [r for r in front if r.metrics["accuracy"] >= min_accuracy]
        if not above:
            raise UserError(f"no front trial reaches accuracy {min_accuracy}; the best has "
                            f"{max(r.metrics['accuracy'] for r in front):.4f}")
        return min(above, key=lambda r: r.metrics["latency_ms"])
    return knee(front)


def knee(front: list[TrialRecord]) -> TrialRecord:
    """The front trial farthest from the line joining the front's two ends (both axes scaled
    to [0, 1]): where giving up accuracy stops buying much speed."""
    if len(front) <= 2:
        return max(front, key=lambda r: r.metrics["accuracy"])
    xs = [r.metrics["latency_ms"] for r in front]
    ys = [r.metrics["accuracy"] for r in front]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    span_x, span_y = (x1 - x0) or 1.0, (y1 - y0) or 1.0
    points = [((x - x0) / span_x, (y - y0) / span_y) for x, y in zip(xs, ys, strict=True)]
    (ax, ay), (bx, by) = min(points), max(points)
    norm = math.hypot(bx - ax, by - ay) or 1.0

    def distance(p: tuple[float, float]) -> float:
        return abs((bx - ax) * (ay - p[1]) - (ax - p[0]) * (by - ay)) / norm

    return front[max(range(len(front)), key=lambda i: distance(points[i]))]


def study_settings(client: Any, study: Any, cache_dir: str) -> Settings:
    """The study's own settings, from its config.yaml artifact (cache_dir from this run)."""
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(study.info.run_id, "config.yaml", folder)
        except Exception as exc:
            raise UserError(f"study run {study.info.run_id} has no config.yaml artifact; it "
                            "was not written by a finished autoprune search") from exc
        raw = parse_yaml(Path(path).read_text(), "the study's config.yaml")
    raw["cache_dir"] = cache_dir
    return settings_from_dict(raw)


def run(settings: Settings, output_dir: str) -> None:
    """Apply the chosen trial; see the module docstring."""
    from mlflow.tracking import MlflowClient

    from autoprune.commands.front import prune_settings
    from autoprune.commands.report import find_study, study_records
    from autoprune.commands.search import git_commit, package_versions
    from autoprune.data import load_data
    from autoprune.export import export_onnx, export_torchscript, onnx_difference, save_pruned
    from autoprune.hardware.calibrate import calibrated
    from autoprune.hardware.latency import settled_latency
    from autoprune.hardware.measure import MeasuredLatency, measurable_here
    from autoprune.hardware.predictor import predict_latency
    from autoprune.models.base import prepare_base_model
    from autoprune.pruning import Policy, find_groups, model_stats
    from autoprune.search.objective import (
        CALIBRATION_SAMPLES,
        TrialSettings,
        calibration_batch,
        deployed_model,
        example_input,
        prune_and_finetune,
    )
    from autoprune.search.pareto import front_records
    from autoprune.tracking.mlflow import check_store_exists
    from autoprune.training import TrainSpec, evaluate

    raw = settings.raw
    rule = str(raw.get("rule", "knee"))
    if rule not in RULES:
        raise UserError(f"unknown rule {rule!r}; choose one of: {', '.join(RULES)}")
    epochs = int(raw.get("epochs", 10))
    if epochs < 1:
        raise UserError(f"epochs must be at least 1, got {epochs}")
    check_store_exists(settings.tracking.uri)
    client = MlflowClient(tracking_uri=settings.tracking.uri)
    study = find_study(client, settings.tracking.experiment, raw.get("run"))
    records, _ = study_records(client, study)
    record = choose(front_records(records), records, raw.get("trial"), rule,
                    raw.get("max_latency_ms"), raw.get("min_accuracy"))
    original = study_settings(client, study, settings.cache_dir)
    print(f"applying trial {record.number} of {study.data.tags.get('study')}: "
          f"{record.summary} (val acc {100 * record.metrics['accuracy']:.2f}%, "
          f"{record.metrics['latency_ms']:.4g} ms in the study)", flush=True)

    data = load_data(original.data)
    base = prepare_base_model(original.model, original.data, original.finetune, data,
                              original.seed, original.cache_dir, print).model
    x = example_input(data)
    groups = find_groups(base, x, original.pruning.ignore)
    policy = Policy.from_params(record.params)
    unknown = sorted(set(policy.decisions) - {g.id for g in groups})
    if unknown:
        raise UserError(f"trial {record.number}'s policy names groups the base model lacks: "
                        f"{', '.join(unknown)}")
    ft = original.finetune
    spec = TrainSpec(epochs, ft.lr, ft.batch_size, ft.momentum, ft.weight_decay,
                     original.seed, ft.distill_alpha, ft.distill_temperature)
    trial_settings = TrialSettings(
        prune=prune_settings(original), finetune=spec, bn_batches=ft.bn_recalibration_batches,
        base_latency_ms=float("nan"), schedule_steps=original.pruning.schedule_steps,
        step_epochs=original.pruning.step_epochs)
    print(f"fine-tuning for {epochs} epochs", flush=True)
    model = prune_and_finetune(policy, base, groups, data, trial_settings)
    deployed = deployed_model(model, policy, data)
    val_accuracy = evaluate(deployed, data.x_val, data.y_val)
    test_accuracy = evaluate(deployed, data.x_test, data.y_test)

    profile, calibration_line = calibrated(original.hardware, original.cache_dir)
    # The number a deployment decision rests on: at least the default measurement effort,
    # measured twice and the faster kept, whatever the study's own settings were.
    m = profile.measure
    profile = dataclasses.replace(profile, measure=dataclasses.replace(
        m, warmup=max(m.warmup, 20), repeats=max(m.repeats, 15), number=max(m.number, 20)))
    measurable, why_not = measurable_here(profile)
    int8 = policy.quantize == "int8"

    def measured(net: torch.nn.Module, on: Any) -> Any:
        return settled_latency(MeasuredLatency(on, data.input_shape), net)

    if measurable:
        latency = measured(deployed, profile)
    elif profile.roofline is not None:
        if int8:
            profile = dataclasses.replace(profile, precision="int8")
        latency = predict_latency(model, data.input_shape, profile)
        print(f"latency predicted ({why_not}; {calibration_line})", flush=True)
    else:
        raise UserError(f"hardware={profile.name} can neither be measured here ({why_not}) "
                        "nor predicted")

    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "model"
        export_torchscript(deployed, x, target / "model.torchscript.pt")
        export_onnx(model, x, target / "model.onnx")
        onnx_accuracy = onnx_test_accuracy(target / "model.onnx", data.x_test, data.y_test)
        onnx_latency = measured(model, dataclasses.replace(
            profile, backend="onnxruntime", device="cpu", precision="fp32", mode="measure")) \
            if profile.device == "cpu" and not int8 else None
        save_pruned(target / "pruned.pt", model, base_model=base, model_config=original.model,
                    input_shape=data.input_shape, groups=groups, policy=policy,
                    prune=prune_settings(original),
                    calibration=data.x_train[:CALIBRATION_SAMPLES],
                    prune_batch=calibration_batch(data))
        (target / "policy.yaml").write_text(policy.to_yaml())
        stats = model_stats(model, x)
        metrics = {"val_accuracy": val_accuracy, "test_accuracy": test_accuracy,
                   "onnx_test_accuracy": onnx_accuracy, "latency_ms": latency.median_ms,
                   "latency_p90_ms": latency.p90_ms, "latency_cv": latency.cv,
                   "onnx_max_abs_diff": onnx_difference(target / "model.onnx", model,
                                                        data.x_test[:64]),
                   **{k: float(v) for k, v in stats.items()}}
        if onnx_latency is not None:
            metrics.update(onnx_latency_ms=onnx_latency.median_ms,
                           onnx_latency_cv=onnx_latency.cv)
        run_id = log_applied(settings.tracking.uri, client, study, record, metrics,
                             latency.source, epochs, target, model, x, raw.get("register"),
                             package_versions(), git_commit())
    print(f"trial {record.number} after {epochs} epochs: val acc {100 * val_accuracy:.2f}%, "
          f"test acc {100 * test_accuracy:.2f}% (ONNX {100 * onnx_accuracy:.2f}%), latency "
          f"{latency.median_ms:.4g} ms {latency.source}"
          + (f", ONNX Runtime {onnx_latency.median_ms:.4g} ms" if onnx_latency else ""))
    print(f"MLflow: run {run_id} (nested in study run {study.info.run_id}), model at "
          f"runs:/{run_id}/mlflow_model" + (f", registered as {raw.get('register')}"
                                             if raw.get("register") else ""))


def onnx_test_accuracy(path: Path, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of the ONNX file itself, run by ONNX Runtime."""
    from autoprune.export import onnx_outputs

    return int((onnx_outputs(path, x).argmax(1) == y).sum()) / len(x)


def log_applied(uri: str, client: Any, study: Any, record: TrialRecord,
                metrics: dict[str, float],
                source: str, epochs: int, folder: Path, model: torch.nn.Module,
                x: torch.Tensor, register: str | None, versions: str, commit: str) -> str:
    """A run nested in the study with the metrics, the exported files and an MLflow model."""
    import mlflow
    from mlflow.entities import Metric

    run = client.create_run(study.info.experiment_id, run_name=f"apply-trial-{record.number:03d}",
                            tags={"mlflow.parentRunId": study.info.run_id, "role": "apply",
                                  "study": study.data.tags.get("study", ""),
                                  "trial_number": str(record.number),
                                  "latency_source": source, "versions": versions,
                                  "git_commit": commit})
    run_id = run.info.run_id
    client.log_param(run_id, "epochs", epochs)
    client.log_batch(run_id, metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()])
    client.log_artifacts(run_id, str(folder), "model")
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=run_id):
        mlflow.pytorch.log_model(model.eval(), name="mlflow_model",
                                 registered_model_name=register or None,
                                 input_example=x.numpy())
    client.set_terminated(run_id, "FINISHED")
    return run_id
