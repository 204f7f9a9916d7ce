"""One model's latency on a hardware profile, as data: the configured model, pruned by a policy
file when one is given (the `policy.yaml` a front trial exports), measured with its spread where
the profile's device is here, and predicted with the latency model's error where it has one."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autoprune.config import HardwareProfile, Settings
from autoprune.errors import UserError
from autoprune.hardware.latency import Latency, input_signature, settled_latency
from autoprune.pruning import Policy, model_stats


def read_policy(path: str) -> Policy:
    """The policy in the YAML file at `path`; raises UserError when it is missing or unreadable."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"policy={path}: no such file (give the policy.yaml a front trial "
                        "exported, or a YAML file with a 'groups' mapping)")
    try:
        return Policy.from_yaml(file.read_text())
    except UnicodeDecodeError:
        raise UserError(f"policy={path} is not a text file (a policy is YAML)") from None


def pruned_model(settings: Settings, policy: Policy | None) -> tuple[nn.Module, Any, Any]:
    """The configured model (its checkpoint loaded), pruned by `policy`; with its example
    input and, for an int8 policy, the inputs that calibrate it (else None)."""
    from autoprune import specs
    from autoprune.models import build_model
    from autoprune.models.base import load_checkpoint
    from autoprune.pruning import apply_policy, find_groups
    from autoprune.search.objective import calibration, int8_inputs

    workload = specs.workload(settings)
    example = workload.example()
    torch.manual_seed(settings.seed)
    model = build_model(settings.model).eval()
    if settings.model.checkpoint:
        load_checkpoint(model, settings.model.checkpoint)
    if policy is None:
        return model, example, None
    groups = find_groups(model, example, settings.pruning.ignore)
    model = apply_policy(model, policy, groups, example, specs.prune_settings(settings),
                         calibration(workload)).model.eval()
    return model, example, int8_inputs(workload) if policy.quantize == "int8" else None


def _measured(profile: HardwareProfile, model: nn.Module, example: Any,
              int8: Any) -> dict[str, Any]:
    from autoprune.hardware.measure import MeasuredLatency

    m = profile.measure
    latency = settled_latency(MeasuredLatency(profile, example), model, int8_calibration=int8)
    return {**_fields(latency), "p90_ms": latency.p90_ms, "cv": latency.cv,
            "repeats": m.repeats, "number": m.number, "threads": profile.threads}


def _predicted(profile: HardwareProfile, model: nn.Module, example: Any, int8: Any,
               calibration: str, fit: dict[str, float] | None) -> dict[str, Any]:
    from autoprune.hardware.predictor import PredictedLatency

    latency = PredictedLatency(profile, example).latency(model, int8_calibration=int8)
    return {**_fields(latency), "uncertainty": latency.uncertainty,
            "model": "kernel-level" if profile.kernel_model is not None else "roofline",
            "calibration": calibration,
            # How far the latency model was off on the models it was calibrated on.
            "relative_error": fit.get("mape") if fit else None,
            "kendall_tau": fit.get("kendall_tau") if fit else None,
            "calibration_samples": fit.get("samples") if fit else None}


def _fields(latency: Latency) -> dict[str, Any]:
    return {"median_ms": latency.median_ms, "source": latency.source, "device": latency.device}


def model_latency(settings: Settings, policy_path: str | None = None) -> dict[str, Any]:
    """The model's size and its latency on `settings.hardware`: `measured` (median, p90,
    robust CV) or None with `not_measured` saying why; `predicted` (median, the calibration's
    relative error and rank correlation) or None where the profile has no latency model.
    Raises UserError when the profile can neither be measured here nor predicted."""
    from autoprune.hardware.calibrate import calibrated, calibration_fit
    from autoprune.hardware.measure import measurable_here

    policy = read_policy(policy_path) if policy_path else None
    measurable, why_not = measurable_here(settings.hardware)
    # Here on the device, kernels the kernel-level model has not seen are timed now.
    profile, calibration = calibrated(settings.hardware, settings.cache_dir, measurable)
    if not measurable and (profile.roofline is None or profile.mode == "measure"):
        raise UserError(f"hardware={profile.name} cannot be measured here: {why_not}"
                        + ("; hardware.mode=predict uses its latency model"
                           if profile.roofline is not None else ""))
    model, example, int8 = pruned_model(settings, policy)
    stats = model_stats(model, example)
    out: dict[str, Any] = {
        "model": settings.model.label, "policy": policy_path,
        "policy_summary": policy.summary() if policy is not None else "unpruned",
        "params": int(stats["params"]), "macs": float(stats["macs"]),
        "input": input_signature(example), "hardware": profile.name,
        "batch_size": profile.batch_size,
        "precision": "int8" if int8 is not None else profile.precision,
        "measured": _measured(profile, model, example, int8) if measurable else None,
        "predicted": None}
    if not measurable:
        out["not_measured"] = why_not
    if profile.roofline is not None:
        if int8 is not None:  # int8 is predicted by the roofline (kernels are timed in fp32)
            profile = dataclasses.replace(profile, kernel_model=None)
        fit = calibration_fit(settings.cache_dir, profile)
        out["predicted"] = _predicted(profile, model, example, int8, calibration, fit)
    return out
