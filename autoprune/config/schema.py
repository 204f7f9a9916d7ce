"""The typed settings of a study: frozen dataclasses built from the composed Hydra config.

The core only ever sees these. Field annotations are read by `values.typed` to check and
coerce each value, so they are written as plain strings of builtin types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RESERVED_MODEL_KEYS = ("name", "_target_", "checkpoint", "pretrained")


@dataclass(frozen=True)
class ModelConfig:
    name: str
    target: str
    checkpoint: str | None
    kwargs: dict[str, Any] = field(hash=False)
    # Use the weights the factory (or the checkpoint) gives as they are: no base training.
    pretrained: bool = False

    @property
    def label(self) -> str:
        """How messages name the model: its config name, or its factory for a custom one."""
        return self.target.rsplit(".", 1)[-1] if self.name == "custom" else self.name


@dataclass(frozen=True)
class DataConfig:
    name: str
    val_fraction: float
    test_fraction: float
    split_seed: int
    # Image sets held as arrays (digits, synthetic, arrays) are checked against these.
    resolution: int | None = None
    in_channels: int | None = None
    num_classes: int | None = None
    path: str | None = None  # data=arrays: the .npz file; data=text: a folder or a file
    pattern: str = "*.py"  # data=text: which files of a folder
    context: int = 64  # data=text: tokens a window feeds the model
    samples: int = 2000  # data=synthetic: how many examples to generate
    noise: float = 1.5  # data=synthetic: noise level around each class template
    # data=dataset: `_target_` configs of the splits (val and test carved from train if absent)
    train: dict[str, Any] | None = field(default=None, hash=False)
    val: dict[str, Any] | None = field(default=None, hash=False)
    test: dict[str, Any] | None = field(default=None, hash=False)
    num_workers: int = 0  # DataLoader worker processes
    pin_memory: bool | None = None  # null: when training on CUDA


@dataclass(frozen=True)
class TaskConfig:
    name: str
    target: str
    kwargs: dict[str, Any] = field(hash=False)


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
    schedule_finetune_steps: int = 17  # fine-tuning steps between an iterative schedule's steps
    quantize: tuple[str, ...] = ("none",)


@dataclass(frozen=True)
class SearchConfig:
    sampler: str
    n_trials: int
    concurrency: int
    seed_ratios: tuple[float, ...]
    storage: str
    options: dict[str, Any] = field(hash=False)
    # Constraints: the front holds only trials that meet them. The primary metric is
    # limited absolutely (metric_limit: a floor when maximised, a ceiling when minimised) or
    # by its worsening from the base reference (max_drop in the metric's units,
    # max_relative_drop as a fraction); min_accuracy and max_accuracy_drop are the same for
    # accuracy.
    max_latency_ms: float | None = None
    metric_limit: float | None = None
    max_drop: float | None = None
    max_relative_drop: float | None = None
    min_accuracy: float | None = None
    max_accuracy_drop: float | None = None
    # Sensitivity warm start: each group pruned alone, no fine-tuning; narrows ratio ranges
    # and seeds the first trials. Drops are relative to the base model's metric.
    sensitivity: bool = False
    sensitivity_ratios: tuple[float, ...] = (0.25, 0.5, 0.75)
    sensitivity_max_drop: float = 0.2
    # Multi-fidelity fine-tuning: at each rung (a fraction of finetune.steps) a trial whose
    # metric trails, by more than the (relative) margin, a trial that reached the same rung
    # at least as fast stops there; with early_stop_curves, unless a finished trial that was
    # no better at that rung ended where it could reach the front.
    # Tune retries of a trial whose worker died (killed, out of memory, a node lost), from
    # its last checkpoint; a trial that fails on its own (diverged) is not retried.
    max_failures: int = 1
    early_stop: bool = True
    early_stop_margin: float = 0.005
    rungs: tuple[float, ...] = (0.0625, 0.125, 0.25, 0.5)
    early_stop_curves: bool = False
    # A base model at chance level stops the study unless this is set.
    allow_weak_base: bool = False


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
    # Under measure_policy=adaptive: the widest prediction interval (log-scale standard
    # deviation) of the learnt latency model trusted to leave a trial unmeasured.
    max_uncertainty: float = 0.15


@dataclass(frozen=True)
class RooflineConfig:
    peak_tflops: dict[str, float] = field(hash=False)
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
    measure_policy: str = "all"
    # The kernel-level latency model `calibrate` stored for this profile (a KernelModel),
    # attached where the calibration is applied; never set from a config.
    kernel_model: Any = field(default=None, compare=False)


@dataclass(frozen=True)
class FinetuneConfig:
    steps: int
    lr: float
    batch_size: int
    optimizer: str
    schedule: str
    warmup: float
    momentum: float
    weight_decay: float
    bn_recalibration_batches: int
    base_steps: int
    base_lr: float
    grad_clip: float = 0.0
    eval_batches: int | None = None
    eval_batch_size: int = 256
    distill_alpha: float = 0.0
    distill_temperature: float = 4.0
    device: str = "auto"
    precision: str = "fp32"


@dataclass(frozen=True)
class TrackingConfig:
    uri: str
    experiment: str
    log_models: bool = True  # each front model as an MLflow model of its trial run
    system_metrics: bool = True  # the machine's CPU, memory (GPU) use on the study run


@dataclass(frozen=True)
class RayConfig:
    address: str | None
    num_cpus: int | None
    cpus_per_trial: int
    gpus_per_trial: float = 0.0
    num_gpus: int | None = None  # a local Ray: GPUs it advertises (null: those it finds)
    object_store_mb: int | None = 256  # a local Ray's object store (null: Ray's default)
    # Joining a cluster: Ray's runtime_env for the study's job; autoprune's own code is
    # shipped to the nodes (py_modules) unless it lists py_modules itself.
    runtime_env: dict[str, Any] | None = field(default=None, hash=False)


@dataclass(frozen=True)
class Settings:
    """Everything one `search` needs, checked and typed."""

    model: ModelConfig
    data: DataConfig
    task: TaskConfig
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
