"""The task role: how a model is trained on a batch and judged on a split.

A task turns the core generic. The core moves batches to the device, calls the model and runs
the loops; the task says what of a batch goes into the model (`inputs`), what of the model's
output counts (`output`: a tensor, a tuple, a dict or an object with `.logits`), the training
loss, and the metrics of a split: one primary metric with its direction (`metric`,
`direction`), plus any others. Everything downstream (the Pareto front, constraints, early
stopping, the RL agent's reward, sensitivity, tables, plots) follows the primary metric.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

MAXIMIZE, MINIMIZE = "maximize", "minimize"
LABEL_KEYS = ("labels", "label")  # where a dict batch (Hugging Face style) keeps its targets
DIRECTIONS = (MAXIMIZE, MINIMIZE)


@dataclass(frozen=True)
class Objective:
    """The primary metric and its direction; every comparison of metric values goes here."""

    metric: str
    direction: str

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")

    @property
    def maximize(self) -> bool:
        return self.direction == MAXIMIZE

    @property
    def mode(self) -> str:
        """Ray Tune's name for the direction."""
        return "max" if self.maximize else "min"

    def score(self, value: float) -> float:
        """`value` signed so that higher is always better."""
        return value if self.maximize else -value

    def better(self, a: float, b: float) -> bool:
        """Whether `a` is strictly better than `b`."""
        return self.score(a) > self.score(b)

    def best(self, values: Iterable[float]) -> float:
        return max(values, key=self.score)

    def worsening(self, reference: float, value: float) -> float:
        """How much worse `value` is than `reference`, in the metric's units (< 0: better)."""
        return self.score(reference) - self.score(value)

    def relative_worsening(self, reference: float, value: float) -> float:
        """`worsening` as a fraction of the reference's size."""
        return self.worsening(reference, value) / abs(reference) if reference else math.inf

    def bound(self, reference: float, worsening: float) -> float:
        """The worst value within `worsening` of `reference`."""
        return reference - worsening if self.maximize else reference + worsening

    def meets(self, value: float, bound: float) -> bool:
        """Whether `value` is at least as good as the worst acceptable `bound`."""
        return self.score(value) >= self.score(bound)

    def ratio(self, reference: float, value: float) -> float:
        """Quality relative to `reference`, 1.0 when equal and higher when better."""
        if self.maximize:
            return value / reference if reference else 0.0
        return reference / value if value else 0.0

    @property
    def percent(self) -> bool:
        """Whether values are fractions shown as percentages (accuracies)."""
        return "accuracy" in self.metric

    def format(self, value: float) -> str:
        if value is None or not math.isfinite(value):
            return "-"
        return f"{100 * value:.2f}%" if self.percent else f"{value:.4g}"

    def tags(self) -> dict[str, str]:
        """How MLflow runs name the objective."""
        return {"objective_metric": self.metric, "objective_direction": self.direction}


def model_output(raw: Any) -> torch.Tensor:
    """The tensor that counts in what a model returned: the tensor itself, `.logits`, a
    dict's "logits", or the first element of a tuple."""
    if isinstance(raw, torch.Tensor):
        return raw
    logits = getattr(raw, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(raw, Mapping) and isinstance(raw.get("logits"), torch.Tensor):
        return raw["logits"]
    if isinstance(raw, (tuple, list)) and raw and isinstance(raw[0], torch.Tensor):
        return raw[0]
    raise TypeError(f"the model returns {type(raw).__name__}, which holds no tensor output "
                    "(a tensor, a tuple starting with one, or .logits)")


def call_model(model: nn.Module, inputs: Any, **keywords: Any) -> Any:
    """Call `model` on inputs: a tensor, a tuple of positional inputs or a dict of keywords
    (with `keywords` added)."""
    if isinstance(inputs, Mapping):
        return model(**inputs, **keywords)
    if isinstance(inputs, tuple):
        return model(*inputs, **keywords)
    return model(inputs, **keywords)


def takes_keyword(model: nn.Module, name: str) -> bool:
    """Whether `model`'s forward takes the keyword `name` (`use_cache`, say)."""
    import inspect

    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def no_cache(model: nn.Module) -> dict[str, bool]:
    """The keywords that turn off a key/value cache (`use_cache=False`) for a model whose
    forward takes one, else none: tracing and export need none of a cache."""
    return {"use_cache": False} if takes_keyword(model, "use_cache") else {}


def to_device(batch: Any, device: torch.device | str, non_blocking: bool = False) -> Any:
    """`batch` with every tensor in it moved to `device` (tuples, lists and dicts kept)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(v, device, non_blocking) for v in batch)
    return batch


def first(inputs: Any, count: int = 1) -> Any:
    """The first `count` examples of model inputs (every tensor cut along its batch dim)."""
    if isinstance(inputs, torch.Tensor):
        return inputs[:count]
    if isinstance(inputs, Mapping):
        return {k: first(v, count) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(first(v, count) for v in inputs)
    return inputs


class Task:
    """Base class of every task; a subclass sets `metric` and `direction` and implements
    `loss` and `measure` (or `evaluate` itself, for a metric that is not a mean over
    examples). See `autoprune.tasks.classification` for a complete one."""

    name = "task"
    metric = "metric"
    direction = MAXIMIZE

    @property
    def objective(self) -> Objective:
        return Objective(self.metric, self.direction)

    def inputs(self, batch: Any) -> Any:
        """What of a batch the model takes: the first element of a pair, a dict's entries but
        its labels (a Hugging Face batch, passed as keywords), else the batch."""
        if isinstance(batch, Mapping):
            return {k: v for k, v in batch.items() if k not in LABEL_KEYS}
        return batch[0] if isinstance(batch, (tuple, list)) else batch

    def labels(self, batch: Any) -> Any:
        """The targets of a batch: the second element of a pair, or a dict's `labels`."""
        if isinstance(batch, Mapping):
            key = next((k for k in LABEL_KEYS if k in batch), None)
            if key is None:
                raise ValueError(f"a dict batch needs its targets under {' or '.join(LABEL_KEYS)}"
                                 f"; it has {', '.join(map(str, batch))}")
            return batch[key]
        return batch[1]

    def output(self, raw: Any) -> torch.Tensor:
        """The tensor of the model's output that loss and metrics read."""
        return model_output(raw)

    def loss(self, output: torch.Tensor, batch: Any) -> torch.Tensor:
        """The training loss of one batch (a scalar tensor)."""
        raise NotImplementedError(f"{type(self).__name__} defines no loss")

    def measure(self, output: torch.Tensor, batch: Any) -> dict[str, tuple[float, float]]:
        """Per metric, (sum over the batch, count): `evaluate` averages them over a split."""
        raise NotImplementedError(f"{type(self).__name__} defines no measure")

    def summarize(self, means: dict[str, float]) -> dict[str, float]:
        """The metrics of a split from the averaged measures (the means as they are)."""
        return means

    def evaluate(self, model: nn.Module, batches: Iterable[Any]) -> dict[str, float]:
        """The metrics of `model` on `batches` (already on the model's device); the primary
        metric among them."""
        sums: dict[str, float] = {}
        counts: dict[str, float] = {}
        for batch in batches:
            output = self.output(call_model(model, self.inputs(batch)))
            for name, (total, count) in self.measure(output, batch).items():
                sums[name] = sums.get(name, 0.0) + float(total)
                counts[name] = counts.get(name, 0.0) + float(count)
        return self.summarize({k: sums[k] / counts[k] for k in sums if counts[k]})

    def distill(self, student: torch.Tensor, teacher: torch.Tensor,
                temperature: float) -> torch.Tensor:
        """Knowledge-distillation loss (Hinton et al., 2015): KL divergence between softened
        outputs over the last dimension, every other position averaged."""
        width = student.shape[-1]
        log_student = nn.functional.log_softmax(student.reshape(-1, width) / temperature, -1)
        log_teacher = nn.functional.log_softmax(teacher.reshape(-1, width) / temperature, -1)
        return nn.functional.kl_div(log_student, log_teacher, reduction="batchmean",
                                    log_target=True) * temperature ** 2

    def weak(self, metrics: Mapping[str, float], output: torch.Tensor) -> str | None:
        """Why a model with these metrics is no better than chance, or None. `output` is the
        model's output on one batch (its shape tells the number of classes)."""
        return None
