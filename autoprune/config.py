"""Typed settings built from the composed Hydra config; the core only ever sees these.

Hydra composes and checks keys; this module checks values (ranges, choices, types) and turns
the config into frozen dataclasses, so bad input fails before any work starts.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoprune.errors import UserError

RESERVED_MODEL_KEYS = ("name", "_target_", "checkpoint")



def parse_yaml(text: str, what: str) -> Any:
    """`text` as plain YAML data: safe_load, so no tag can build an object or run code.

    Raises UserError naming `what` when it is not valid YAML or uses such a tag."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())[:200]
        raise UserError(f"{what} is not plain YAML data: {first}") from exc

@dataclass(frozen=True)
class ModelConfig:
    name: str
    target: str
    checkpoint: str | None
    kwargs: dict[str, Any]

    @property
    def label(self) -> str:
        """How messages name the model: its config name, or its factory for a custom one."""
        return self.target.rsplit(".", 1)[-1] if self.name == "custom" else self.name


@dataclass(frozen=True)
class DataConfig:
    name: str
    resolution: int
    in_channels: int
    num_classes: int
    val_fraction: float
    test_fraction: float
    split_seed: int
    path: str | None = None  # data=arrays: the .npz file
    samples: int = 2000  # data=synthetic: how many examples to generate
    noise: float = 1.5  # data=synthetic: noise level around each class template
    target: str | None = None  # data=dataset: factory of a map-style torch Dataset
    args: dict[str, Any] = field(default_factory=dict)  # data=dataset: its keyword arguments


@dataclass(frozen=True)
class PruningConfig:
    strategies: tuple[str, ...]
    ratio_min: float
    ratio_max: float
    ratio_step: float
    importance: str
    ignore: tuple[str, ...]
    schedules: tuple[str, ...] = ("oneshot",)
    schedule_steps: int = 3
    step_epochs: int = 1
    quantize: tuple[str, ...] = ("none",)


@dataclass(frozen=True)
class SearchConfig:
    sampler: str
    n_trials: int
    concurrency: int
    seed_ratios: tuple[float, ...]
    storage: str
    options: dict[str, Any]
    # Constraints: the front holds only trials that meet them (Optuna constraints_func).
    max_latency_ms: float | None = None
    min_accuracy: float | None = None
    max_accuracy_drop: float | None = None  # below the base model's validation accuracy
    # Sensitivity warm start: each group pruned alone, no fine-tuning; narrows ratio ranges
    # and seeds the first trials.
    sensitivity: bool = False
    sensitivity_ratios: tuple[float, ...] = (0.25, 0.5, 0.75)
    sensitivity_max_drop: float = 0.2
    # Early stopping: a trial whose accuracy after half its fine-tuning trails a finished
    # trial that is at least as fast by more than the margin stops there.
    early_stop: bool = True
    early_stop_margin: float = 0.1


@dataclass(frozen=True)
class MeasureConfig:
    warmup: int = 20
    warmup_s: float = 0.0  # and at least this long: a GPU coming out of idle ramps its clocks
    repeats: int = 15
    number: int = 20
    max_cv: float = 0.05
    retries: int = 2
    # The bench is asked at most `attempts` times, each bounded by `timeout_s`; a study stops
    # when `give_up_after` trials in a row could not be measured.
    timeout_s: float = 300.0
    attempts: int = 3
    give_up_after: int = 3


@dataclass(frozen=True)
class RooflineConfig:
    peak_tflops: dict[str, float]
    bandwidth_gbps: float
    kernel_overhead_us: float
    compute_efficiency: float
    memory_efficiency: float
    fuse_elementwise: bool
    # Depthwise convolutions reach a far smaller fraction of peak than dense ones, and data
    # movers (normalisation, activations, pooling) pay a launch cost of their own.
    depthwise_efficiency: float
    elementwise_overhead_us: float


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    description: str
    mode: str
    ray_resource: str | None
    device: str
    backend: str
    precision: str
    batch_size: int
    threads: int
    alignment: int
    measure: MeasureConfig
    roofline: RooflineConfig | None


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int
    lr: float
    batch_size: int
    momentum: float
    weight_decay: float
    bn_recalibration_batches: int
    base_epochs: int
    base_lr: float
    distill_alpha: float = 0.0
    distill_temperature: float = 4.0


@dataclass(frozen=True)
class TrackingConfig:
    uri: str
    experiment: str


@dataclass(frozen=True)
class RayConfig:
    address: str | None
    num_cpus: int | None
    cpus_per_trial: int


@dataclass(frozen=True)
class Settings:
    """Everything one `search` needs, checked and typed."""

    model: ModelConfig
    data: DataConfig
    pruning: PruningConfig
    search: SearchConfig
    hardware: HardwareProfile
    finetune: FinetuneConfig
    tracking: TrackingConfig
    ray: RayConfig
    seed: int
    study_name: str
    cache_dir: str
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


MODES = ("measure", "predict", "auto")
PRECISIONS = ("fp32", "fp16", "int8")
BACKENDS = ("torch", "onnxruntime", "tensorrt")
SAMPLERS = ("tpe", "nsga2", "nsga3", "gp", "random", "uniform", "amc")


def _typed(cls: type, section: str, values: dict[str, Any]) -> Any:
    """Build dataclass `cls` from `values`, naming the section in any error."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise UserError(
            f"unknown key {section}.{unknown[0]}; valid keys: {', '.join(sorted(names))}"
        )
    missing = sorted(f.name for f in dataclasses.fields(cls)
                     if f.name not in values and f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING and f.name != "raw")
    if missing:
        raise UserError(f"{section} is missing {', '.join(missing)}")
    checked = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            checked[f.name] = _coerce(f"{section}.{f.name}", str(f.type), values[f.name])
    return cls(**checked)


def _coerce(name: str, annotation: str, value: Any) -> Any:
    """Check `value` against a field annotation (as written in this module) and normalise it."""
    optional = annotation.endswith(" | None")
    base = annotation.removesuffix(" | None")
    if value is None:
        if optional:
            return None
        raise UserError(f"{name} must be set (it is null)")
    if base == "int":
        return _number("", name, value, int)
    if base == "float":
        return _number("", name, value, float)
    if base == "bool":
        if not isinstance(value, bool):
            raise UserError(f"{name} must be true or false, got {value!r}")
        return value
    if base == "str":
        if not isinstance(value, str):
            raise UserError(f"{name} must be a string, got {value!r}")
        return value
    if base.startswith("tuple["):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{name} must be a list like [a, b], got {value!r}")
        item = "str" if base == "tuple[str, ...]" else "float"
        return tuple(_coerce(name, item, v) for v in value)
    if base.startswith("dict["):
        if not isinstance(value, dict):
            raise UserError(f"{name} must be a mapping, got {value!r}")
        return dict(value)
    return value  # nested dataclasses are checked where they are built


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)


def _number(section: str, key: str, value: Any, kind: type = float) -> Any:
    name = f"{section}.{key}" if section else key
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{name} must be a number, got {value!r}")
    if kind is int and float(value) != int(value):
        raise UserError(f"{name} must be an integer, got {value!r}")
    return kind(value)


def _model(raw: dict[str, Any]) -> ModelConfig:
    target = raw.get("_target_")
    _check(
        isinstance(target, str) and "." in target,
        f"model._target_ must name an importable factory like pkg.module.fn, got {target!r}",
    )
    kwargs = {k: v for k, v in raw.items() if k not in RESERVED_MODEL_KEYS}
    return ModelConfig(
        name=str(raw.get("name", target.rsplit(".", 1)[-1])),
        target=target,
        checkpoint=raw.get("checkpoint"),
        kwargs=kwargs,
    )


def _choices(name: str, values: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    _check(len(values) > 0, f"{name} is empty; choose from {', '.join(allowed)}")
    for value in values:
        _check(value in allowed,
               f"unknown {name} value {value!r}; choose from {', '.join(allowed)}")
    _check(len(set(values)) == len(values), f"{name} lists a value twice: {list(values)}")


def _pruning(raw: dict[str, Any]) -> PruningConfig:
    from autoprune.pruning.criteria import CRITERIA
    from autoprune.pruning.quantize import QUANTIZATIONS
    from autoprune.pruning.schedule import SCHEDULES
    from autoprune.pruning.strategies import STRATEGIES

    cfg = _typed(PruningConfig, "pruning", raw)
    _choices("pruning.strategies", cfg.strategies, tuple(STRATEGIES))
    _choices("pruning.schedules", cfg.schedules, SCHEDULES)
    _choices("pruning.quantize", cfg.quantize, QUANTIZATIONS)
    _check(cfg.schedule_steps >= 2, "pruning.schedule_steps must be at least 2")
    _check(cfg.step_epochs >= 0, "pruning.step_epochs must be at least 0")
    lo, hi, step = cfg.ratio_min, cfg.ratio_max, cfg.ratio_step
    _check(0.0 <= lo < 1.0 and 0.0 <= hi < 1.0, "pruning ratios must lie in [0, 1)")
    _check(lo <= hi, f"pruning.ratio_min {lo} is above pruning.ratio_max {hi}: empty range")
    _check(0.0 < step <= max(hi - lo, step), "pruning.ratio_step must be positive")
    _check(
        cfg.importance in CRITERIA,
        f"unknown pruning.importance {cfg.importance!r}; choose from {', '.join(CRITERIA)}",
    )
    return cfg


def _search(raw: dict[str, Any]) -> SearchConfig:
    cfg = _typed(SearchConfig, "search", raw)
    _check(
        cfg.sampler in SAMPLERS,
        f"unknown search.sampler {cfg.sampler!r}; choose from {', '.join(SAMPLERS)}",
    )
    _check(cfg.n_trials >= 1, f"search.n_trials must be at least 1, got {cfg.n_trials}")
    _check(cfg.concurrency >= 1,
           f"search.concurrency must be at least 1, got {cfg.concurrency}")
    _check(all(0.0 <= r < 1.0 for r in cfg.seed_ratios), "search.seed_ratios must lie in [0, 1)")
    _check(cfg.max_latency_ms is None or cfg.max_latency_ms > 0,
           "search.max_latency_ms must be positive (or null for no limit)")
    _check(cfg.min_accuracy is None or 0.0 <= cfg.min_accuracy <= 1.0,
           "search.min_accuracy must lie in [0, 1] (or null for no floor)")
    _check(cfg.max_accuracy_drop is None or 0.0 <= cfg.max_accuracy_drop <= 1.0,
           "search.max_accuracy_drop must lie in [0, 1] (or null for no floor)")
    _check(cfg.min_accuracy is None or cfg.max_accuracy_drop is None,
           "set search.min_accuracy or search.max_accuracy_drop, not both")
    _check(len(cfg.sensitivity_ratios) > 0 and all(0.0 < r < 1.0 for r in cfg.sensitivity_ratios),
           "search.sensitivity_ratios must be a non-empty list of ratios in (0, 1)")
    _check(0.0 < cfg.sensitivity_max_drop <= 1.0, "search.sensitivity_max_drop must lie in (0, 1]")
    _check(cfg.early_stop_margin >= 0.0, "search.early_stop_margin must be at least 0")
    _check_storage_url(cfg.storage)
    return cfg


def _check_storage_url(url: str) -> None:
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


def _hardware(raw: dict[str, Any]) -> HardwareProfile:
    values = dict(raw)
    measure = _typed(MeasureConfig, "hardware.measure", dict(values.pop("measure", None) or {}))
    roof_raw = values.pop("roofline", None)
    roofline = _typed(RooflineConfig, "hardware.roofline", dict(roof_raw)) if roof_raw else None
    profile = _typed(HardwareProfile, "hardware", {**values, "measure": measure,
                                                     "roofline": roofline})
    _check(profile.mode in MODES,
           f"unknown hardware.mode {profile.mode!r}; choose from {', '.join(MODES)}")
    _check(profile.backend in BACKENDS,
           f"unknown hardware.backend {profile.backend!r}; choose from {', '.join(BACKENDS)}")
    _check(profile.precision in PRECISIONS,
           f"unknown hardware.precision {profile.precision!r}; "
           f"choose from {', '.join(PRECISIONS)}")
    _check(profile.backend != "tensorrt" or profile.device.startswith("cuda"),
           f"hardware.backend=tensorrt runs on an NVIDIA GPU; hardware.device is "
           f"{profile.device} (use cuda, or backend torch or onnxruntime)")
    _check(profile.alignment >= 1, "hardware.alignment must be at least 1")
    _check(profile.batch_size >= 1, "hardware.batch_size must be at least 1")
    _check(profile.threads >= 1, "hardware.threads must be at least 1")
    _check(measure.repeats >= 3 and measure.number >= 1 and measure.warmup >= 0
           and measure.warmup_s >= 0 and measure.retries >= 0 and measure.max_cv > 0
           and measure.timeout_s > 0 and measure.attempts >= 1 and measure.give_up_after >= 1,
           "hardware.measure needs repeats >= 3, number >= 1, warmup >= 0, warmup_s >= 0, "
           "retries >= 0, max_cv > 0, timeout_s > 0, attempts >= 1 and give_up_after >= 1")
    if profile.mode == "predict":
        _check(roofline is not None,
               f"hardware={profile.name} has no latency model (roofline); use mode=measure")
    if roofline is not None:
        _check(profile.precision in roofline.peak_tflops,
               f"hardware.roofline.peak_tflops has no figure for {profile.precision}")
    return profile


def _importable(target: str) -> None:
    module_name, _, attr = target.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import failure is the user's target being wrong
        raise UserError(f"model._target_ {target!r}: cannot import {module_name} ({exc})") from exc
    if not callable(getattr(module, attr, None)):
        raise UserError(f"model._target_ {target!r}: {module_name} has no callable {attr!r}")


def settings_from_dict(raw: dict[str, Any]) -> Settings:
    """Check a resolved config (plain dict) and return typed Settings; raises UserError."""
    _check(isinstance(raw.get("model"), dict), "the config has no model section")
    model = _model(dict(raw["model"]))
    _importable(model.target)
    for section in ("model", "data", "pruning", "search", "hardware", "finetune", "tracking",
                    "ray"):
        _check(isinstance(raw.get(section), dict), f"the config has no {section} section")
    data_raw = dict(raw["data"])
    if "_target_" in data_raw:
        data_raw["target"] = data_raw.pop("_target_")
    data = _typed(DataConfig, "data", data_raw)
    _check(data.resolution >= 8, "data.resolution must be at least 8")
    _check(0 < data.val_fraction < 1 and 0 < data.test_fraction < 1
           and data.val_fraction + data.test_fraction < 1,
           "data.val_fraction and data.test_fraction must be in (0, 1) and sum below 1")
    finetune = _typed(FinetuneConfig, "finetune", dict(raw["finetune"]))
    _check(finetune.epochs >= 0 and finetune.base_epochs >= 1 and finetune.batch_size >= 1,
           "finetune.epochs must be >= 0, finetune.base_epochs and batch_size >= 1")
    _check(finetune.lr > 0 and finetune.base_lr > 0, "finetune.lr and base_lr must be positive")
    _check(0 <= finetune.momentum < 1 and finetune.weight_decay >= 0
           and finetune.bn_recalibration_batches >= 0,
           "finetune.momentum must be in [0, 1), weight_decay and bn_recalibration_batches >= 0")
    _check(0 <= finetune.distill_alpha <= 1 and finetune.distill_temperature > 0,
           "finetune.distill_alpha must be in [0, 1] and distill_temperature positive")
    ray_cfg = _typed(RayConfig, "ray", dict(raw["ray"]))
    _check(ray_cfg.cpus_per_trial >= 1, "ray.cpus_per_trial must be at least 1")
    _check(ray_cfg.num_cpus is None or ray_cfg.num_cpus >= 1,
           "ray.num_cpus must be at least 1 (or null for all)")
    pruning = _pruning(dict(raw["pruning"]))
    hardware = _hardware(dict(raw["hardware"]))
    _check("dynamic" not in pruning.strategies or "none" in pruning.quantize,
           "pruning.strategies has dynamic, which int8 cannot quantise, and pruning.quantize "
           "allows only int8; add none to pruning.quantize")
    if "int8" in pruning.quantize and hardware.backend != "torch" and hardware.mode != "predict":
        raise UserError(f"pruning.quantize has int8, which is measured with the torch backend; "
                        f"hardware.backend is {hardware.backend}")
    if "int8" in pruning.quantize and hardware.roofline is not None:
        _check("int8" in hardware.roofline.peak_tflops,
               f"pruning.quantize has int8 but hardware={hardware.name} has no int8 peak "
               "in roofline.peak_tflops")
    search = _search(dict(raw["search"]))
    _check(search.sampler != "amc" or hardware.roofline is not None,
           f"search=amc needs a latency model for its action wall, and hardware={hardware.name} "
           "has none (hardware.roofline)")
    return Settings(
        model=model,
        data=data,
        pruning=pruning,
        search=search,
        hardware=hardware,
        finetune=finetune,
        tracking=_typed(TrackingConfig, "tracking", dict(raw["tracking"])),
        ray=ray_cfg,
        seed=_coerce("seed", "int", raw.get("seed")),
        study_name=_coerce("study_name", "str", raw.get("study_name")),
        cache_dir=_coerce("cache_dir", "str", raw.get("cache_dir")),
        raw=raw,
    )
