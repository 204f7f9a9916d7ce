"""`python -m autoprune latency`: one model's latency on a profile, measured and/or predicted."""

from __future__ import annotations

import torch

from autoprune.config import Settings
from autoprune.errors import UserError
from autoprune.hardware.latency import Latency, settled_latency
from autoprune.hardware.measure import MeasuredLatency, measurable_here
from autoprune.hardware.predictor import predict_latency
from autoprune.models import build_model
from autoprune.models.base import load_checkpoint
from autoprune.pruning import model_stats

SUMMARY = "measure and/or predict a model's latency on a hardware profile"


def describe(latency: Latency, blocks: str = "") -> str:
    """One line: median with its spread, p90, where."""
    if latency.source == "predicted":
        return f"predicted {latency.median_ms:.4f} ms ({latency.device})"
    return (f"measured  {latency.median_ms:.4f} ms +/- {100 * latency.cv:.1f}% (robust CV"
            f"{blocks}), p90 {latency.p90_ms:.4f} ms ({latency.device})")


def run(settings: Settings, output_dir: str) -> None:
    """Print the model's size and its latency on `settings.hardware`."""
    from autoprune import specs
    from autoprune.hardware.calibrate import calibrated
    from autoprune.hardware.latency import input_signature

    profile, calibration = calibrated(settings.hardware, settings.cache_dir)
    example = specs.workload(settings).example()
    torch.manual_seed(settings.seed)
    model = build_model(settings.model).eval()
    if settings.model.checkpoint:
        load_checkpoint(model, settings.model.checkpoint)
    measurable, why_not = measurable_here(profile)
    if not measurable and (profile.roofline is None or profile.mode == "measure"):
        raise UserError(f"hardware={profile.name} cannot be measured here: {why_not}"
                        + ("; hardware.mode=predict uses its latency model"
                           if profile.roofline is not None else ""))
    stats = model_stats(model, example)
    print(f"{settings.model.name}: {stats['params']:,.0f} parameters, {stats['macs'] / 1e6:.2f} M "
          f"MACs per example, input {input_signature(example)}, batch {profile.batch_size}, "
          f"{profile.precision}")
    if measurable:
        m = profile.measure
        latency = settled_latency(MeasuredLatency(profile, example), model)
        print(describe(latency, f" of {m.repeats} blocks of {m.number} runs, "
                                f"{profile.threads} thread(s)"), flush=True)
    else:
        print(f"measured  -  ({why_not})")
    if profile.roofline is not None:
        print(f"{describe(predict_latency(model, example, profile))}; {calibration}")
