"""How well the calibrated latency model ranks and predicts measured latency on this machine.

Calibrates the profile here (as `python -m autoprune calibrate` does), then for `--variants`
randomly pruned variants of each zoo model (drawn with other seeds than the calibration set)
compares predicted with measured latency: Kendall tau and mean absolute percentage error per
model. `--repeat` variants per model are measured a second time to report the measurement's own
spread on this machine (the CV of the two medians, and the robust CV within a measurement).
Writes benchmarks/results/predictor_accuracy.{json,md}.

    python benchmarks/predictor_accuracy.py --variants 40
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from autoprune.cli import compose
from autoprune.config import settings_from_dict
from autoprune.hardware import calibrate as cal
from autoprune.hardware.measure import measure_latency

RESULTS = Path(__file__).parent / "results"
TARGETS = {"kendall_tau": 0.85, "mape": 0.15}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--hardware", default="cpu")
    args = parser.parse_args()
    profile = settings_from_dict(compose("search", [f"hardware={args.hardware}"])).hardware
    shape = (1, 16, 16)
    started = time.monotonic()

    def measure(model):  # noqa: ANN001, ANN202
        return measure_latency(model, shape, profile)

    calibration = cal.collect([(n, m) for n in cal.ZOO for m in cal.pruned_variants(
        n, 6, 1, profile.alignment, shape)], profile, shape, measure)
    fitted = cal.fit(calibration, profile.roofline, profile.precision)
    rows, repeat_cv, within_cv = [], [], []
    for seed, name in enumerate(cal.ZOO, start=100):
        models = cal.pruned_variants(name, args.variants, seed, profile.alignment, shape)
        samples = cal.collect([(name, m) for m in models], profile, shape, measure)
        for model, sample in zip(models[:args.repeat], samples, strict=False):
            again = measure(model)
            pair = [sample.measured_ms, again.median_ms]
            repeat_cv.append(statistics.pstdev(pair) / statistics.mean(pair))
            within_cv.append(again.cv)
        row = {"model": name, "variants": len(samples),
               "measured_ms_min": min(s.measured_ms for s in samples),
               "measured_ms_max": max(s.measured_ms for s in samples),
               **cal.errors(samples, fitted, profile.precision)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    fit = {"compute_efficiency": fitted.compute_efficiency,
           "memory_efficiency": fitted.memory_efficiency,
           "kernel_overhead_us": fitted.kernel_overhead_us,
           "calibration": cal.errors(calibration, fitted, profile.precision)}
    spread = {"repeat_cv_median": statistics.median(repeat_cv),
              "repeat_cv_max": max(repeat_cv),
              "within_cv_median": statistics.median(within_cv)}
    command = f"python benchmarks/predictor_accuracy.py --variants {args.variants} " \
              f"--repeat {args.repeat} --hardware {args.hardware}"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "predictor_accuracy.json").write_text(json.dumps(
        {"command": command, "machine": platform.platform(), "torch": torch.__version__,
         "profile": profile.name, "fit": fit, "spread": spread, "models": rows,
         "targets": TARGETS, "wall_s": round(time.monotonic() - started)}, indent=2) + "\n")
    lines = [f"# Latency model against measurement, hardware={profile.name}\n", f"`{command}`\n",
             f"Fitted on {len(calibration)} calibration models: compute efficiency "
             f"{fitted.compute_efficiency:.3f}, memory efficiency {fitted.memory_efficiency:.3f}"
             f", kernel overhead {fitted.kernel_overhead_us:.2f} us. Repeat measurements: CV "
             f"of two medians {100 * spread['repeat_cv_median']:.1f}% (median), "
             f"{100 * spread['repeat_cv_max']:.1f}% (max); robust CV within a measurement "
             f"{100 * spread['within_cv_median']:.1f}% (median).\n",
             "Targets: Kendall tau >= 0.85 and MAPE <= 15% for every model.\n",
             "| model | variants | measured ms (min-max) | Kendall tau | MAPE | targets met |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        met = r["kendall_tau"] >= TARGETS["kendall_tau"] and r["mape"] <= TARGETS["mape"]
        lines.append(f"| {r['model']} | {r['variants']} | {r['measured_ms_min']:.3f}-"
                     f"{r['measured_ms_max']:.3f} | {r['kendall_tau']:.2f} | "
                     f"{100 * r['mape']:.1f}% | {'yes' if met else 'no'} |")
    (RESULTS / "predictor_accuracy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
