"""Value checks of each config section; each returns that section's typed settings."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from autoprune.config.schema import (
    RESERVED_MODEL_KEYS,
    DataConfig,
    FinetuneConfig,
    HardwareProfile,
    MeasureConfig,
    ModelConfig,
    PruningConfig,
    RayConfig,
    RooflineConfig,
    SearchConfig,
    TaskConfig,
)
from autoprune.config.values import check, choices, one_of, typed
from autoprune.errors import UserError

MODES = ("measure", "predict", "auto")
MEASURE_POLICIES = ("all", "adaptive")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
BACKENDS = ("torch", "compile", "cudagraphs", "onnxruntime", "tensorrt")
SAMPLERS = ("tpe", "nsga2", "nsga3", "gp", "random", "uniform", "refine", "amc")
DATA = ("digits", "synthetic", "arrays", "dataset", "text")


def model(raw: dict[str, Any]) -> ModelConfig:
    target = raw.get("_target_")
    check(isinstance(target, str) and "." in target,
          f"model._target_ must name an importable factory like pkg.module.fn, got {target!r}")
    pretrained = raw.get("pretrained", False)
    check(isinstance(pretrained, bool), f"model.pretrained must be true or false, got "
                                        f"{pretrained!r}")
    cfg = ModelConfig(name=str(raw.get("name", target.rsplit(".", 1)[-1])), target=target,
                      checkpoint=raw.get("checkpoint"), pretrained=pretrained,
                      kwargs={k: v for k, v in raw.items() if k not in RESERVED_MODEL_KEYS})
    importable("model._target_", cfg.target)
    return cfg


def importable(key: str, target: str) -> None:
    module_name, _, attr = target.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import failure is the user's target being wrong
        raise UserError(f"{key} {target!r}: cannot import {module_name} ({exc})") from exc
    if not callable(getattr(module, attr, None)):
        raise UserError(f"{key} {target!r}: {module_name} has no callable {attr!r}")


def task(raw: dict[str, Any]) -> TaskConfig:
    target = raw.get("_target_")
    check(isinstance(target, str) and "." in target,
          f"task._target_ must name a Task class or factory like pkg.module.Task, got {target!r}")
    importable("task._target_", target)
    name = raw.get("name") or target.rsplit(".", 1)[-1]
    return TaskConfig(name=str(name), target=target,
                      kwargs={k: v for k, v in raw.items() if k not in ("name", "_target_")})


def data(raw: dict[str, Any]) -> DataConfig:
    cfg = typed(DataConfig, "data", raw)
    one_of("data", cfg.name, DATA)
    check(cfg.resolution is None or cfg.resolution >= 8, "data.resolution must be at least 8")
    check(0 < cfg.val_fraction < 1 and 0 < cfg.test_fraction < 1
          and cfg.val_fraction + cfg.test_fraction < 1,
          "data.val_fraction and data.test_fraction must be in (0, 1) and sum below 1")
    check(cfg.context >= 2, "data.context must be at least 2")
    check(cfg.num_workers >= 0, "data.num_workers must be at least 0")
    return cfg


def pruning(raw: dict[str, Any]) -> PruningConfig:
    from autoprune.pruning.criteria import CRITERIA
    from autoprune.pruning.quantize import QUANTIZATIONS
    from autoprune.pruning.schedule import SCHEDULES
    from autoprune.pruning.strategies import STRATEGIES

    cfg = typed(PruningConfig, "pruning", raw)
    choices("pruning.strategies", cfg.strategies, tuple(STRATEGIES))
    choices("pruning.schedules", cfg.schedules, SCHEDULES)
    choices("pruning.quantize", cfg.quantize, QUANTIZATIONS)
    check(cfg.schedule_steps >= 2, "pruning.schedule_steps must be at least 2")
    check(cfg.schedule_finetune_steps >= 0,
          "pruning.schedule_finetune_steps must be at least 0")
    lo, hi, step = cfg.ratio_min, cfg.ratio_max, cfg.ratio_step
    check(0.0 <= lo < 1.0 and 0.0 <= hi < 1.0, "pruning ratios must lie in [0, 1)")
    check(lo <= hi, f"pruning.ratio_min {lo} is above pruning.ratio_max {hi}: empty range")
    check(0.0 < step <= max(hi - lo, step), "pruning.ratio_step must be positive")
    one_of("pruning.importance", cfg.importance, CRITERIA)
    return cfg


def search(raw: dict[str, Any]) -> SearchConfig:
    cfg = typed(SearchConfig, "search", raw)
    one_of("search.sampler", cfg.sampler, SAMPLERS)
    check(cfg.n_trials >= 1, f"search.n_trials must be at least 1, got {cfg.n_trials}")
    check(cfg.concurrency >= 1, f"search.concurrency must be at least 1, got {cfg.concurrency}")
    check(all(0.0 <= r < 1.0 for r in cfg.seed_ratios), "search.seed_ratios must lie in [0, 1)")
    check(cfg.max_latency_ms is None or cfg.max_latency_ms > 0,
          "search.max_latency_ms must be positive (or null for no limit)")
    check(cfg.min_accuracy is None or 0.0 <= cfg.min_accuracy <= 1.0,
          "search.min_accuracy must lie in [0, 1] (or null for no floor)")
    for key in ("max_accuracy_drop", "max_drop", "max_relative_drop"):
        value = getattr(cfg, key)
        check(value is None or value >= 0, f"search.{key} must be at least 0 (or null)")
    check(cfg.max_accuracy_drop is None or cfg.max_accuracy_drop <= 1.0,
          "search.max_accuracy_drop must lie in [0, 1] (or null for no floor)")
    limits = [k for k in ("metric_limit", "max_drop", "max_relative_drop", "min_accuracy",
                          "max_accuracy_drop") if getattr(cfg, k) is not None]
    check(len(limits) <= 1, f"set one limit on the metric, not {' and '.join(limits)}")
    check(len(cfg.sensitivity_ratios) > 0 and all(0.0 < r < 1.0 for r in cfg.sensitivity_ratios),
          "search.sensitivity_ratios must be a non-empty list of ratios in (0, 1)")
    check(0.0 < cfg.sensitivity_max_drop <= 1.0, "search.sensitivity_max_drop must lie in (0, 1]")
    check(cfg.early_stop_margin >= 0.0, "search.early_stop_margin must be at least 0")
    check(cfg.max_failures >= 0, "search.max_failures must be at least 0")
    check(all(0.0 < r < 1.0 for r in cfg.rungs),
          "search.rungs must be fractions of finetune.steps in (0, 1)")
    storage_url(cfg.storage)
    return cfg


def storage_url(url: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise UserError(f"search.storage {url!r} is not a database URL; "
                        "use e.g. sqlite:///optuna.db or postgresql://host/db") from exc
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(parsed.database).expanduser().resolve().parent
        if not folder.is_dir():
            raise UserError(f"search.storage {url}: folder {folder} does not exist")


def hardware(raw: dict[str, Any]) -> HardwareProfile:
    values = dict(raw)
    check("kernel_model" not in values, "hardware.kernel_model is not a setting: `python -m "
          "autoprune calibrate` fits it and stores it per profile")
    measure = typed(MeasureConfig, "hardware.measure", dict(values.pop("measure", None) or {}))
    roof_raw = values.pop("roofline", None)
    if roof_raw and isinstance(roof_raw.get("peak_tflops"), dict):
        # null: a precision the device lacks (a profile can unset one its parent has)
        roof_raw = {**roof_raw, "peak_tflops": {k: v for k, v in roof_raw["peak_tflops"].items()
                                                if v is not None}}
    roofline = typed(RooflineConfig, "hardware.roofline", dict(roof_raw)) if roof_raw else None
    profile = typed(HardwareProfile, "hardware", {**values, "measure": measure,
                                                   "roofline": roofline})
    one_of("hardware.mode", profile.mode, MODES)
    one_of("hardware.measure_policy", profile.measure_policy, MEASURE_POLICIES)
    one_of("hardware.backend", profile.backend, BACKENDS)
    one_of("hardware.precision", profile.precision, PRECISIONS)
    for gpu_only in ("tensorrt", "cudagraphs"):
        check(profile.backend != gpu_only or profile.device.startswith("cuda"),
              f"hardware.backend={gpu_only} runs on an NVIDIA GPU; hardware.device is "
              f"{profile.device} (use cuda, or backend torch, compile or onnxruntime)")
    check(profile.alignment >= 1, "hardware.alignment must be at least 1")
    check(profile.batch_size >= 1, "hardware.batch_size must be at least 1")
    check(profile.threads >= 1, "hardware.threads must be at least 1")
    check(measure.repeats >= 3 and measure.number >= 1 and measure.warmup >= 0
          and measure.warmup_s >= 0 and measure.retries >= 0 and measure.max_cv > 0
          and measure.timeout_s > 0 and measure.attempts >= 1 and measure.give_up_after >= 1
          and measure.max_uncertainty > 0,
          "hardware.measure needs repeats >= 3, number >= 1, warmup >= 0, warmup_s >= 0, "
          "retries >= 0, max_cv > 0, timeout_s > 0, attempts >= 1, give_up_after >= 1 and "
          "max_uncertainty > 0")
    if profile.mode == "predict":
        check(roofline is not None,
              f"hardware={profile.name} has no latency model (roofline); use mode=measure")
    check(profile.measure_policy == "all" or roofline is not None,
          f"hardware.measure_policy=adaptive learns from the latency model, and hardware="
          f"{profile.name} has none (roofline); use measure_policy=all")
    if roofline is not None:
        check(profile.precision in roofline.peak_tflops,
              f"hardware.roofline.peak_tflops has no figure for {profile.precision}")
    return profile


def finetune(raw: dict[str, Any]) -> FinetuneConfig:
    from autoprune.training import DEVICES, OPTIMIZERS, PRECISIONS, SCHEDULES

    cfg = typed(FinetuneConfig, "finetune", raw)
    check(cfg.steps >= 0 and cfg.base_steps >= 1 and cfg.batch_size >= 1,
          "finetune.steps must be >= 0, finetune.base_steps and batch_size >= 1")
    check(cfg.lr > 0 and cfg.base_lr > 0, "finetune.lr and base_lr must be positive")
    check(0 <= cfg.momentum < 1 and cfg.weight_decay >= 0 and cfg.bn_recalibration_batches >= 0,
          "finetune.momentum must be in [0, 1), weight_decay and bn_recalibration_batches >= 0")
    check(0 <= cfg.warmup < 1, "finetune.warmup must be a fraction of the steps in [0, 1)")
    check(cfg.grad_clip >= 0, "finetune.grad_clip must be at least 0 (0: no clipping)")
    check(cfg.eval_batches is None or cfg.eval_batches >= 1,
          "finetune.eval_batches must be at least 1 (or null for the whole split)")
    check(cfg.eval_batch_size >= 1, "finetune.eval_batch_size must be at least 1")
    check(0 <= cfg.distill_alpha <= 1 and cfg.distill_temperature > 0,
          "finetune.distill_alpha must be in [0, 1] and distill_temperature positive")
    one_of("finetune.optimizer", cfg.optimizer, OPTIMIZERS)
    one_of("finetune.schedule", cfg.schedule, SCHEDULES)
    one_of("finetune.precision", cfg.precision, PRECISIONS)
    check(cfg.device in DEVICES or cfg.device.startswith("cuda:"),
          f"unknown finetune.device {cfg.device!r}; choose from {', '.join(DEVICES)} "
          "(or cuda:N)")
    return cfg


def ray(raw: dict[str, Any]) -> RayConfig:
    cfg = typed(RayConfig, "ray", raw)
    check(cfg.cpus_per_trial >= 1, "ray.cpus_per_trial must be at least 1")
    check(cfg.num_cpus is None or cfg.num_cpus >= 1,
          "ray.num_cpus must be at least 1 (or null for all)")
    check(cfg.gpus_per_trial >= 0, "ray.gpus_per_trial must be at least 0")
    check(cfg.gpus_per_trial <= 1 or cfg.gpus_per_trial == int(cfg.gpus_per_trial),
          "ray.gpus_per_trial must be a fraction of one GPU (0.5: two trials share one) or "
          f"a whole number of GPUs, got {cfg.gpus_per_trial}")
    check(cfg.num_gpus is None or cfg.num_gpus >= 0, "ray.num_gpus must be at least 0")
    return cfg
