"""Adaptive measurement (`hardware.measure_policy=adaptive`): a latency model that learns from
the study's own measurements, and measures only the trials it is unsure of or that could
enter the front.

Each trial's architecture is first predicted by the profile's latency model (the roofline,
calibrated or not); a least-squares line in log space, refitted from every measurement the
study has made (the base model's first), maps that prediction to this device, with a
prediction interval from the residuals. A trial is measured while fewer than `warmup`
measurements exist, when its interval is wider than `max_uncertainty`, or when, at the
optimistic end of its interval, no finished trial at least as good is faster (it could be on
the front). Otherwise its latency is the corrected prediction, labelled predicted, with its
uncertainty. The front is measured at the end in any case (study/retime.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import ray
import torch
from torch import nn

from autoprune.hardware.latency import Latency

WARMUP = 6  # measurements before any trial may go unmeasured
MAX_UNCERTAINTY = 0.15  # widest interval (log-scale standard deviation) trusted unmeasured
Z = 2.0  # the optimistic end of the interval: Z standard deviations faster


@dataclass
class LogLinear:
    """log(measured) = a + b log(predicted), least squares, with its prediction interval."""

    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)

    def add(self, predicted_ms: float, measured_ms: float) -> None:
        self.xs.append(math.log(predicted_ms))
        self.ys.append(math.log(measured_ms))

    def estimate(self, predicted_ms: float) -> tuple[float, float]:
        """The corrected latency (ms) and the log-scale standard deviation of its prediction
        interval (inf with fewer than two measurements)."""
        n, x = len(self.xs), math.log(predicted_ms)
        if n == 0:
            return predicted_ms, math.inf
        mx, my = sum(self.xs) / n, sum(self.ys) / n
        sxx = sum((v - mx) ** 2 for v in self.xs)
        # A slope needs spread in the predictions; until then, a constant ratio.
        b = sum((u - mx) * (v - my) for u, v in zip(self.xs, self.ys, strict=True)) / sxx \
            if n >= 3 and sxx > 1e-6 else 1.0
        a = my - b * mx
        if n < 2:
            return math.exp(a + b * x), math.inf
        dof = max(n - (2 if b != 1.0 else 1), 1)
        resid = sum((v - a - b * u) ** 2 for u, v in zip(self.xs, self.ys, strict=True))
        s = math.sqrt(resid / dof)
        lever = (x - mx) ** 2 / sxx if sxx > 1e-6 else 0.0
        return math.exp(a + b * x), s * math.sqrt(1.0 + 1.0 / n + lever)


def could_enter_front(score: float, optimistic_ms: float,
                      finished: Sequence[tuple[float, float]]) -> bool:
    """Whether a trial of `score` (higher is better) at `optimistic_ms` is dominated by no
    finished (score, latency) at least as good and at least as fast."""
    return not any(s >= score and ms <= optimistic_ms for s, ms in finished)


class Learner:
    """The study's measurements and finished trials, shared by every trial (as the actor
    `LatencyLearner`)."""

    def __init__(self, warmup: int = WARMUP, max_uncertainty: float = MAX_UNCERTAINTY) -> None:
        self.model = LogLinear()
        self.warmup, self.max_uncertainty = warmup, max_uncertainty
        self.finished: list[tuple[float, float]] = []
        self.trials: set[str] = set()
        self.measured: set[str] = set()
        self.errors: list[float] = []  # |estimate - measured| / measured, before each fit

    def estimate(self, trial: str, predicted_ms: float) -> tuple[float, float]:
        self.trials.add(trial)
        return self.model.estimate(predicted_ms)

    def decide(self, trial: str, predicted_ms: float,
               score: float | None) -> tuple[bool, float, float]:
        """Whether to measure (while warming up, when unsure, or, with the trial's score
        known, when it could be on the front), with the estimate that decided it."""
        self.trials.add(trial)
        ms, sigma = self.model.estimate(predicted_ms)
        if len(self.model.xs) < self.warmup or sigma > self.max_uncertainty:
            return True, ms, sigma
        return (score is not None and could_enter_front(score, ms * math.exp(-Z * sigma),
                                                        self.finished)), ms, sigma

    def should_measure(self, trial: str, predicted_ms: float, score: float | None) -> bool:
        return self.decide(trial, predicted_ms, score)[0]

    def measured_one(self, trial: str, predicted_ms: float, measured_ms: float) -> None:
        """A measurement: scored against the estimate made without it, then learnt from."""
        ms, sigma = self.model.estimate(predicted_ms)
        if trial and math.isfinite(sigma):
            self.errors.append(abs(ms - measured_ms) / measured_ms)
        if trial:
            self.trials.add(trial)
            self.measured.add(trial)
        self.model.add(predicted_ms, measured_ms)

    def finished_one(self, score: float, latency_ms: float) -> None:
        self.finished.append((score, latency_ms))

    def summary(self) -> dict[str, float]:
        """How many trials were measured, how many were not, and the model's error on those
        measured (mean absolute relative error of the estimates made before measuring)."""
        out = {"latency_measured_trials": float(len(self.measured)),
               "latency_unmeasured_trials": float(len(self.trials - self.measured))}
        if self.errors:
            out["latency_model_error"] = sum(self.errors) / len(self.errors)
        return out


LatencyLearner = ray.remote(num_cpus=0)(Learner)


class AdaptiveLatency:
    """A trial's latency backend under adaptive measurement: the bench when the learner says
    so, else the learner's corrected prediction with its uncertainty. The first call (the
    architecture just pruned, the score unknown) measures only while the learner is unsure;
    the call after `inform(score)` also measures a trial that could be on the front."""

    source = "measured"

    def __init__(self, measured: Any, predicted: Any, learner: Any, trial: str) -> None:
        self.measured, self.predicted, self.learner = measured, predicted, learner
        self.trial = trial
        self.score: float | None = None
        self.last: Latency | None = None  # this trial's latest measurement

    def inform(self, score: float) -> None:
        """The trial's score (higher is better), known once it is fine-tuned and evaluated."""
        self.score = score

    def latency(self, model: nn.Module, refresh: bool = False,
                int8_calibration: torch.Tensor | None = None) -> Latency:
        predicted_ms = self.predicted.latency(model, int8_calibration=int8_calibration).median_ms
        measure, ms, sigma = ray.get(self.learner.decide.remote(self.trial, predicted_ms,
                                                                self.score))
        if measure:
            timing = self.measured.latency(model, refresh=refresh,
                                           int8_calibration=int8_calibration)
            self.learner.measured_one.remote(self.trial, predicted_ms, timing.median_ms)
            self.last = timing
        elif self.last is not None:  # measured before: the measurement stands
            timing = self.last
        else:
            timing = Latency(ms, ms, 0.0, "predicted", self.predicted.profile.description,
                             uncertainty=sigma)
        if self.score is not None:
            self.learner.finished_one.remote(self.score, timing.median_ms)
        return timing


def describe_learnt(summary: dict[str, float]) -> str:
    """The learner's summary in one line."""
    measured = int(summary["latency_measured_trials"])
    total = measured + int(summary["latency_unmeasured_trials"])
    error = summary.get("latency_model_error")
    return (f"adaptive measurement: measured {measured} of {total} trials, "
            f"{total - measured} predicted instead"
            + (f"; the learnt latency model was off by {100 * error:.1f}% on average on the "
               "trials it measured (estimated before each measurement)"
               if error is not None else ""))
