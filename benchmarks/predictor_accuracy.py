"""How well the calibrated latency model ranks and predicts measured latency on this machine.

Each run calibrates the profile here exactly as `python -m autoprune calibrate` does, then for
`--variants` randomly pruned variants of each zoo model (drawn with other seeds than the
calibration set) compares predicted with measured latency: Kendall tau and mean absolute
percentage error per model. Every model is measured in two passes (the fastest counts, as in
calibrate); the CV between the passes is the measurement's own spread on this machine. The
whole benchmark runs `--runs` times, so each figure comes with its range across runs.
Writes benchmarks/results/predictor_accuracy.{json,md}.

    python benchmarks/predictor_accuracy.py --variants 40 --runs 2
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
from autoprune.commands.calibrate import SEED, VARIANTS
from autoprune.config import settings_from_dict
from autoprune.hardware import calibrate as cal
from autoprune.hardware.measure import measure_latency

RESULTS = Path(__file__).parent / "results"
TARGETS = {"kendall_tau": 0.85, "mape": 0.15}


def one_run(profile, shape, variants: int) -> dict:  # noqa: ANN001
    """Calibrate, then score the fitted model on fresh variants of every zoo model."""

    example = torch.zeros(1, *shape)

    def measure(model):  # noqa: ANN001, ANN202
        return measure_latency(model, example, profile)

    calibration = cal.collect([(n, m) for n in cal.ZOO for m in cal.pruned_variants(
        n, VARIANTS, SEED, profile.alignment, shape)], profile, example, measure)
    fitted = cal.fit(calibration, profile.roofline, profile.precision)
    models, pass_cv = {}, []
    for seed, name in enumerate(cal.ZOO, start=100):
        variants_ = cal.pruned_variants(name, variants, seed, profile.alignment, shape)
        samples = cal.collect([(name, m) for m in variants_], profile, example, measure)
        pass_cv += [statistics.pstdev(s.passes) / statistics.mean(s.passes) for s in samples]
        models[name] = {"variants": len(samples),
                        "measured_ms_min": min(s.measured_ms for s in samples),
                        "measured_ms_max": max(s.measured_ms for s in samples),
                        **cal.errors(samples, fitted, profile.precision)}
        print(json.dumps({"model": name, **models[name]}), flush=True)
    return {"fit": {name: getattr(fitted, name) for name in cal.FITTED},
            "calibration": cal.errors(calibration, fitted, profile.precision),
            "pass_cv_median": statistics.median(pass_cv), "pass_cv_p90":
            statistics.quantiles(pass_cv, n=10)[-1], "pass_cv_max": max(pass_cv),
            "models": models}


def spread(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    """`median [min, max]` of values across runs."""
    return (f"{scale * statistics.median(values):.{digits}f} [{scale * min(values):.{digits}f}, "
            f"{scale * max(values):.{digits}f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=40)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--hardware", default="cpu")
    args = parser.parse_args()
    profile = settings_from_dict(compose("search", [f"hardware={args.hardware}"])).hardware
    shape = (1, 16, 16)
    started = time.monotonic()
    runs = [one_run(profile, shape, args.variants) for _ in range(args.runs)]
    command = f"python benchmarks/predictor_accuracy.py --variants {args.variants} " \
              f"--runs {args.runs} --hardware {args.hardware}"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "predictor_accuracy.json").write_text(json.dumps(
        {"command": command, "machine": platform.platform(), "torch": torch.__version__,
         "profile": profile.name, "targets": TARGETS, "runs": runs,
         "wall_s": round(time.monotonic() - started)}, indent=2) + "\n")
    fits = "; ".join(f"{name} {spread([r['fit'][name] for r in runs], digits=3)}"
                     for name in cal.FITTED)
    lines = [f"# Latency model against measurement, hardware={profile.name}\n", f"`{command}`\n",
             f"Each figure is the median [min, max] over {args.runs} runs, each calibrated "
             f"afresh on {len(cal.ZOO) * VARIANTS} models. Fitted factors: {fits}.\n",
             "Measurement spread on this machine (CV between the two passes over each model): "
             f"median {spread([r['pass_cv_median'] for r in runs], 100, 1)}%, p90 "
             f"{spread([r['pass_cv_p90'] for r in runs], 100, 1)}%, max "
             f"{spread([r['pass_cv_max'] for r in runs], 100, 1)}%.\n",
             "Targets: Kendall tau >= 0.85 and MAPE <= 15% for every model.\n",
             "| model | variants | measured ms (min-max) | Kendall tau | MAPE % | targets met |",
             "|---|---|---|---|---|---|"]
    for name in cal.ZOO:
        rows = [r["models"][name] for r in runs]
        taus, mapes = [r["kendall_tau"] for r in rows], [r["mape"] for r in rows]
        met = statistics.median(taus) >= TARGETS["kendall_tau"] and \
            statistics.median(mapes) <= TARGETS["mape"]
        lines.append(f"| {name} | {rows[0]['variants']} | "
                     f"{min(r['measured_ms_min'] for r in rows):.3f}-"
                     f"{max(r['measured_ms_max'] for r in rows):.3f} | {spread(taus)} | "
                     f"{spread(mapes, 100, 1)} | {'yes' if met else 'no'} |")
    (RESULTS / "predictor_accuracy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
