"""Optuna samplers chosen by `search=<name>`: multivariate TPE, NSGA-II, random."""

from __future__ import annotations

import warnings
from typing import Any

import optuna

from autoprune.config import SearchConfig
from autoprune.errors import UserError


def make_sampler(cfg: SearchConfig, seed: int) -> optuna.samplers.BaseSampler:
    """Return the configured multi-objective sampler, seeded; bad options raise UserError."""
    factories: dict[str, Any] = {
        "tpe": optuna.samplers.TPESampler,
        "nsga2": optuna.samplers.NSGAIISampler,
        "random": optuna.samplers.RandomSampler,
    }
    options = dict(cfg.options)
    if cfg.sampler == "tpe":
        # Several trials run at once: let pending ones count as "bad" so TPE spreads out.
        options.setdefault("constant_liar", cfg.concurrency > 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return factories[cfg.sampler](seed=seed, **options)
    except (TypeError, ValueError) as exc:
        raise UserError(f"search.options do not fit the {cfg.sampler} sampler: {exc}") from exc
