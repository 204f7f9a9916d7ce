"""Typed settings built from the composed Hydra config; the core only ever sees these.

Hydra composes and checks keys; this package checks values (ranges, choices, types) and turns
the config into frozen dataclasses, so bad input fails before any work starts.
"""

from __future__ import annotations

from typing import Any

from autoprune.config import sections
from autoprune.config.schema import (
    DataConfig,
    FinetuneConfig,
    HardwareProfile,
    MeasureConfig,
    ModelConfig,
    PruningConfig,
    RayConfig,
    RooflineConfig,
    SearchConfig,
    Settings,
    TaskConfig,
    TrackingConfig,
)
from autoprune.config.sections import SAMPLERS
from autoprune.config.values import check, coerce, parse_yaml, typed

SECTIONS = ("model", "data", "task", "pruning", "search", "hardware", "finetune", "tracking",
            "ray")


def settings_from_dict(raw: dict[str, Any]) -> Settings:
    """Check a resolved config (plain dict) and return typed Settings; raises UserError."""
    check(isinstance(raw.get("model"), dict), "the config has no model section")
    model = sections.model(dict(raw["model"]))
    for section in SECTIONS:
        check(isinstance(raw.get(section), dict), f"the config has no {section} section")
    pruning = sections.pruning(dict(raw["pruning"]))
    hardware = sections.hardware(dict(raw["hardware"]))
    search = sections.search(dict(raw["search"]))
    _cross_checks(pruning, hardware, search)
    return Settings(
        model=model,
        data=sections.data(dict(raw["data"])),
        task=sections.task(dict(raw["task"])),
        pruning=pruning,
        search=search,
        hardware=hardware,
        finetune=sections.finetune(dict(raw["finetune"])),
        tracking=typed(TrackingConfig, "tracking", dict(raw["tracking"])),
        ray=sections.ray(dict(raw["ray"])),
        seed=coerce("seed", "int", raw.get("seed")),
        study_name=coerce("study_name", "str", raw.get("study_name")),
        cache_dir=coerce("cache_dir", "str", raw.get("cache_dir")),
        raw=raw,
    )


def _cross_checks(pruning: PruningConfig, hardware: HardwareProfile,
                  search: SearchConfig) -> None:
    check("dynamic" not in pruning.strategies or "none" in pruning.quantize,
          "pruning.strategies has dynamic, which int8 cannot quantise, and pruning.quantize "
          "allows only int8; add none to pruning.quantize")
    check("int8" not in pruning.quantize or hardware.backend == "torch"
          or hardware.mode == "predict",
          f"pruning.quantize has int8, which is measured with the torch backend; "
          f"hardware.backend is {hardware.backend}")
    if "int8" in pruning.quantize and hardware.roofline is not None:
        check("int8" in hardware.roofline.peak_tflops,
              f"pruning.quantize has int8 but hardware={hardware.name} has no int8 peak "
              "in roofline.peak_tflops")
    check(search.sampler != "amc" or hardware.roofline is not None,
          f"search=amc needs a latency model for its action wall, and hardware={hardware.name} "
          "has none (hardware.roofline)")


__all__ = ["SAMPLERS", "DataConfig", "FinetuneConfig", "HardwareProfile", "MeasureConfig",
           "ModelConfig", "PruningConfig", "RayConfig", "RooflineConfig", "SearchConfig",
           "Settings", "TaskConfig", "TrackingConfig", "parse_yaml", "settings_from_dict"]
