"""The work of `apply` once a trial is chosen: rebuild, fine-tune, score, time, export, log."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import torch

from autoprune import specs
from autoprune.config import Settings
from autoprune.errors import UserError
from autoprune.search.records import TrialRecord
from autoprune.tracking.models import requirements


def _latency(deployed: torch.nn.Module, model: torch.nn.Module, original: Settings,
             example: Any, int8: bool) -> tuple[Any, Any]:
    """The deployed model's latency (measured here, or predicted), and ONNX Runtime's
    measurement of the float model on a CPU profile (else None)."""
    from autoprune.commands.apply import measured_profile
    from autoprune.hardware.calibrate import calibrated
    from autoprune.hardware.latency import settled_latency
    from autoprune.hardware.measure import MeasuredLatency, measurable_here
    from autoprune.hardware.predictor import predict_latency

    profile, calibration_line = calibrated(original.hardware, original.cache_dir)
    profile = measured_profile(profile)
    measurable, why_not = measurable_here(profile)
    if measurable:
        latency = settled_latency(MeasuredLatency(profile, example), deployed)
    elif profile.roofline is not None:
        if int8:
            profile = dataclasses.replace(profile, precision="int8")
        latency = predict_latency(model, example, profile)
        print(f"latency predicted ({why_not}; {calibration_line})", flush=True)
    else:
        raise UserError(f"hardware={profile.name} can neither be measured here ({why_not}) "
                        "nor predicted")
    onnx = None
    if profile.device == "cpu" and not int8:
        onnx_profile = dataclasses.replace(profile, backend="onnxruntime", device="cpu",
                                           precision="fp32", mode="measure")
        onnx = settled_latency(MeasuredLatency(onnx_profile, example), model)
    return latency, onnx


def _rebuild(record: TrialRecord, original: Settings, steps: int) -> tuple:
    """The trial's model rebuilt from the study's base model and fine-tuned for `steps`:
    (workload, base model, groups, policy, float model, deployed model)."""
    from autoprune.models.base import prepare_base_model
    from autoprune.pruning import Policy, find_groups
    from autoprune.search.objective import deployed_model, prune_and_finetune
    from autoprune.study.run import trial_settings

    workload = specs.workload(original)
    base = prepare_base_model(original.model, original.data,
                              specs.train_spec(original, base=True), workload,
                              original.cache_dir, print).model
    groups = find_groups(base, workload.example(), original.pruning.ignore)
    policy = Policy.from_params(record.params)
    unknown = sorted(set(policy.decisions) - {g.id for g in groups})
    if unknown:
        raise UserError(f"trial {record.number}'s policy names groups the base model lacks: "
                        f"{', '.join(unknown)}")
    spec = dataclasses.replace(trial_settings(original),
                               finetune=specs.train_spec(original, steps=steps))
    print(f"fine-tuning for {steps} steps", flush=True)
    model = prune_and_finetune(policy, base, groups, workload, spec).cpu()
    return workload, base, groups, policy, model, deployed_model(model, policy, workload)


def _export(folder: Path, model: torch.nn.Module, deployed: torch.nn.Module, base: Any,
            groups: list, policy: Any, workload: Any, original: Settings) -> dict[str, float]:
    """Write TorchScript, ONNX, the bundle and the policy to `folder`; return the ONNX file's
    own test score and its largest difference from PyTorch."""
    from autoprune.commands.apply import onnx_test_score
    from autoprune.export import export_onnx, export_torchscript, onnx_difference, save_pruned
    from autoprune.search.objective import calibration, int8_inputs

    x = workload.example()
    export_torchscript(deployed, x, folder / "model.torchscript.pt")
    export_onnx(model, x, folder / "model.onnx")
    save_pruned(folder / "pruned.pt", model, base_model=base, model_config=original.model,
                example=x, groups=groups, policy=policy, prune=specs.prune_settings(original),
                calibration=int8_inputs(workload) if policy.quantize == "int8" else None,
                prune_batch=calibration(workload))
    (folder / "policy.yaml").write_text(policy.to_yaml())
    name = workload.task.metric
    return {f"onnx_test_{name}": onnx_test_score(folder / "model.onnx", workload),
            "onnx_max_abs_diff": onnx_difference(folder / "model.onnx", model,
                                                 workload.task.inputs(workload.items(64)))}


def apply_trial(settings: Settings, client: Any, study: Any, record: TrialRecord,
                original: Settings, steps: int) -> None:
    """Rebuild `record`'s model from the study's base model, fine-tune it for `steps`, score,
    time, export and log it as a run nested in the study."""
    from autoprune.pruning import model_stats
    from autoprune.study.provenance import git_commit, package_versions
    from autoprune.training import evaluate

    workload, base, groups, policy, model, deployed = _rebuild(record, original, steps)
    name, fmt = workload.task.metric, workload.task.objective.format
    int8 = policy.quantize == "int8"
    compute = dataclasses.replace(specs.compute(original.finetune), device="cpu") if int8 \
        else specs.compute(original.finetune)
    val = evaluate(deployed, workload, "val", False, compute)[name]
    test = evaluate(deployed, workload, "test", False, compute)[name]
    deployed.cpu()
    x = workload.example()
    latency, onnx_latency = _latency(deployed, model, original, x, int8)
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "model"
        onnx = _export(target, model, deployed, base, groups, policy, workload, original)
        metrics = {f"val_{name}": val, f"test_{name}": test, **onnx,
                   "latency_ms": latency.median_ms, "latency_p90_ms": latency.p90_ms,
                   "latency_cv": latency.cv,
                   **{k: float(v) for k, v in model_stats(model, x).items()}}
        if onnx_latency is not None:
            metrics.update(onnx_latency_ms=onnx_latency.median_ms,
                           onnx_latency_cv=onnx_latency.cv)
        register = settings.raw.get("register")
        run_id = log_applied(settings.tracking.uri, client, study, record, metrics,
                             latency.source, steps, target, model, x, register,
                             package_versions(), git_commit())
    print(f"trial {record.number} after {steps} steps: val {name} {fmt(val)}, test {name} "
          f"{fmt(test)} (ONNX {fmt(onnx[f'onnx_test_{name}'])}), latency "
          f"{latency.median_ms:.4g} ms {latency.source}"
          + (f", ONNX Runtime {onnx_latency.median_ms:.4g} ms" if onnx_latency else ""))
    print(f"MLflow: run {run_id} (nested in study run {study.info.run_id}), model at "
          f"runs:/{run_id}/mlflow_model" + (f", registered as {register}" if register else ""))


def log_applied(uri: str, client: Any, study: Any, record: TrialRecord,
                metrics: dict[str, float], source: str, steps: int, folder: Path,
                model: torch.nn.Module, x: Any, register: str | None, versions: str,
                commit: str) -> str:
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
    client.log_param(run_id, "steps", steps)
    client.log_batch(run_id, metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()])
    client.log_artifacts(run_id, str(folder), "model")
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=run_id):
        mlflow.pytorch.log_model(model.eval(), name="mlflow_model",
                                 registered_model_name=register or None,
                                 input_example=x.numpy(), pip_requirements=requirements())
    client.set_terminated(run_id, "FINISHED")
    return run_id
