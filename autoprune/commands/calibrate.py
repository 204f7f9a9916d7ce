"""`python -m autoprune calibrate`: fit a profile's latency model to measurements made here."""

from __future__ import annotations

import time

import torch

from autoprune.config import Settings
from autoprune.errors import UserError
from autoprune.hardware import calibrate as cal
from autoprune.hardware.kernel_calibration import (
    fit_kernel_model,
    kernel_errors,
    kernel_level,
    stored,
    table_path,
)
from autoprune.hardware.kernels import KernelTable
from autoprune.hardware.measure import measurable_here, measure_latency

SUMMARY = "fit a profile's latency model to latencies measured on this device"
VARIANTS = 12  # per zoo model: the unpruned model and eleven random structured prunings
SEED = 1  # the predictor benchmark draws its variants with other seeds


def run(settings: Settings, output_dir: str) -> None:
    """Measure the calibration set, fit, report the fit and store it per profile."""
    profile = settings.hardware
    if profile.roofline is None:
        raise UserError(f"hardware={profile.name} has no latency model (roofline) to calibrate")
    measurable, why_not = measurable_here(profile)
    if not measurable:
        raise UserError(f"calibrate measures on this machine, and hardware={profile.name} "
                        f"cannot be measured here: {why_not}")
    # The zoo's image models, at the data's image size where it has one.
    shape = (settings.data.in_channels or 1, settings.data.resolution or 16,
             settings.data.resolution or 16)
    example = torch.zeros(1, *shape)
    started = time.monotonic()
    models = [(name, m) for name in cal.ZOO
              for m in cal.pruned_variants(name, VARIANTS, SEED, profile.alignment, shape)]
    print(f"calibrating the latency model of {profile.description} on {len(models)} models, "
          "each measured twice", flush=True)
    device = ""

    def measure(model):  # noqa: ANN001, ANN202
        nonlocal device
        latency = measure_latency(model, example, profile)
        device = latency.device
        return latency

    def progress(done: int, total: int, name: str, ms: float) -> None:
        print(f"[{done:3d}/{total}] {name:<10} {ms:.4f} ms", flush=True)

    samples = cal.collect(models, profile, example, measure, progress=progress)
    before = cal.errors(samples, profile.roofline, profile.precision)
    fitted = cal.fit(samples, profile.roofline, profile.precision)
    after = cal.errors(samples, fitted, profile.precision)
    path = cal.calibration_path(settings.cache_dir, profile)
    print("roofline fitted: " + ", ".join(f"{name} {getattr(fitted, name):.3g}"
                                          for name in cal.FITTED))
    print(f"roofline on the calibration set: MAPE {100 * before['mape']:.1f}% -> "
          f"{100 * after['mape']:.1f}%, Kendall tau {before['kendall_tau']:.3f} -> "
          f"{after['kendall_tau']:.3f}")
    section = _kernel_level(profile, [m for _, m in models], samples, example, path, device)
    cal.save(path, profile, fitted, device, before, after, len(samples), section)
    print(f"stored in {path}; used from now on by hardware={profile.name} "
          f"({time.monotonic() - started:.0f} s)")


def _kernel_level(profile, models, samples, example, path, device):  # noqa: ANN001, ANN202
    """Fit the kernel-level model where the profile can have one; its calibration section."""
    if not kernel_level(profile):
        print(f"no kernel-level model for hardware={profile.name} (it needs backend=torch on "
              "this machine's CPU): predictions use the roofline")
        return None

    def progress(done: int, total: int) -> None:
        if done % 12 == 0 or done == total:
            print(f"[{done:3d}/{total}] kernels timed", flush=True)

    measured = [s.measured_ms for s in samples]
    model, passes = fit_kernel_model(models, measured, profile, example, table_path(path),
                                     device, progress)
    fit = kernel_errors(model, passes, measured)
    kernels = len(KernelTable(table_path(path)).ms)
    print(f"kernel-level model: {kernels} distinct kernels; on the calibration set MAPE "
          f"{100 * fit['mape']:.1f}%, Kendall tau {fit['kendall_tau']:.3f}, "
          f"{100 * fit['within_10']:.0f}% within 10%")
    return stored(model, fit, kernels)
