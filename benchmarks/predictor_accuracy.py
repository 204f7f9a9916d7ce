"""How well the calibrated latency models rank and predict measured latency on this machine.

Each run first calibrates the profile into a fresh cache folder with the real command
(`python -m autoprune calibrate`), then scores both latency models it fitted, the kernel-level
model and the roofline:

- zoo: `--variants` randomly pruned variants of each zoo model, drawn with other seeds than the
  calibration set, each measured in three passes over all of them, a minute or more apart (the
  fastest counts: this shared machine runs several percent slower for seconds to minutes at
  a time); Kendall tau, MAPE and the share within
  10% of measured, per model;
- held out: `--held-out` random prunings of an architecture no latency model was fitted on
  (tests/fixtures/hybrid.py: residual, depthwise, squeeze-excite and attention blocks), each
  written as a policy file and put through `python -m autoprune latency ... policy=<file>
  format=json`, whose measured and predicted figures are compared (tau, MAPE, share within
  15%); the roofline's prediction of the same models beside it.

The CV between passes is the measurement's own spread here. Every figure comes with its range
across `--runs` runs. Writes benchmarks/results/predictor_accuracy.{json,md}.

    python benchmarks/predictor_accuracy.py --variants 40 --held-out 20 --runs 2
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import commit
from predictor_report import report
from scipy.stats import kendalltau

from autoprune.cli import compose
from autoprune.config import settings_from_dict
from autoprune.hardware import calibrate as cal
from autoprune.hardware.measure import measure_latency
from autoprune.hardware.predictor import predict_latency, record_kernels

RESULTS = Path(__file__).parent / "results"
HELD_OUT = "tests.fixtures.hybrid.HybridNet"
HELD_OUT_ARGS = ["model=custom", f"model._target_={HELD_OUT}", "hardware=cpu"]


def scores(predicted: list[float], measured: list[float], within: float) -> dict[str, float]:
    """Kendall tau, MAPE and the share of predictions within `within` of measured."""
    errors = [abs(p - m) / m for p, m in zip(predicted, measured, strict=True)]
    return {"kendall_tau": float(kendalltau(predicted, measured).statistic),
            "mape": statistics.mean(errors),
            "within": sum(e <= within for e in errors) / len(errors)}


def calibrate_into(cache: str, hardware: str) -> dict:
    """Run the calibrate command into `cache`; the calibration file it wrote."""
    subprocess.run([sys.executable, "-m", "autoprune", "calibrate", f"hardware={hardware}",
                    f"cache_dir={cache}"], check=True, stdout=subprocess.DEVNULL)
    return json.loads((Path(cache) / "calibration" / f"{hardware}.json").read_text())


def zoo(profile, shape, variants: int, cache: str) -> tuple[dict, list[float]]:  # noqa: ANN001
    """Both models' scores on fresh variants of every zoo model, and the pass CVs."""
    kernel_level, _ = cal.calibrated(profile, cache, measure_new=True)
    roofline = kernel_level.roofline
    example = torch.zeros(1, *shape)
    models, pass_cv = {}, []
    built = {name: cal.pruned_variants(name, variants, seed, profile.alignment, shape)
             for seed, name in enumerate(cal.ZOO, start=100)}
    # Each pass goes over every variant of every model, so a model's three passes lie a
    # minute or more apart: a slow spell of this shared machine lasts seconds to minutes.
    every = cal.collect([(name, m) for name, ms in built.items() for m in ms], profile,
                        example, lambda m: measure_latency(m, example, profile), passes=3)
    for name, variants_ in built.items():
        samples = [s for s in every if s.name == name]
        pass_cv += [statistics.pstdev(s.passes) / statistics.mean(s.passes) for s in samples]
        measured = [s.measured_ms for s in samples]
        # How well one pass ranks the variants as another does: the measurement's own tau.
        pass_tau = statistics.median(
            kendalltau([s.passes[i] for s in samples], [s.passes[j] for s in samples]).statistic
            for i, j in ((0, 1), (0, 2), (1, 2)))
        kernel = [predict_latency(m, example, kernel_level).median_ms for m in variants_]
        roof = [cal.predict_ms(record_kernels(m, example, profile), roofline, profile.precision)
                for m in variants_]
        models[name] = {"variants": len(samples), "pass_tau": float(pass_tau),
                        "measured_ms_min": min(measured),
                        "measured_ms_max": max(measured),
                        "kernel": scores(kernel, measured, 0.10),
                        "roofline": scores(roof, measured, 0.10),
                        "ms": {"measured": measured, "kernel": kernel, "roofline": roof}}
        print(json.dumps({"model": name, **{k: v for k, v in models[name].items()
                                            if k != "ms"}}), flush=True)
    return models, pass_cv


def held_out(count: int, cache: str, seed: int) -> dict:
    """The held-out architecture's random prunings through the latency command."""
    from autoprune.model_latency import pruned_model, read_policy
    from autoprune.pruning import find_groups

    settings = settings_from_dict(compose("latency", [*HELD_OUT_ARGS, f"cache_dir={cache}"]))
    profile, _ = cal.calibrated(settings.hardware, cache)
    base, example, _ = pruned_model(settings, None)
    find_groups(base, example)
    policies = cal.random_policies(base, example, count, seed, profile.alignment)
    measured, kernel, roof = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        for index, policy in enumerate(policies):
            path = Path(folder) / f"policy{index}.yaml"
            path.write_text(policy.to_yaml())
            out = subprocess.run(
                [sys.executable, "-m", "autoprune", "latency", *HELD_OUT_ARGS,
                 f"cache_dir={cache}", f"policy={path}", "format=json"],
                check=True, capture_output=True, text=True).stdout
            figures = json.loads(out)
            measured.append(figures["measured"]["median_ms"])
            kernel.append(figures["predicted"]["median_ms"])
            model, _, _ = pruned_model(settings, read_policy(str(path)))
            roof.append(cal.predict_ms(record_kernels(model, example, profile),
                                       profile.roofline, profile.precision))
            print(json.dumps({"held_out": index, "measured_ms": measured[-1],
                              "kernel_ms": kernel[-1], "roofline_ms": roof[-1],
                              "model": figures["predicted"]["model"]}), flush=True)
    return {"variants": count, "measured_ms_min": min(measured),
            "measured_ms_max": max(measured), "kernel": scores(kernel, measured, 0.15),
            "roofline": scores(roof, measured, 0.15),
            "ms": {"measured": measured, "kernel": kernel, "roofline": roof}}


def one_run(profile, shape, variants: int, held: int, seed: int) -> dict:  # noqa: ANN001
    """Calibrate afresh, then score both latency models on the zoo and the held-out model."""
    with tempfile.TemporaryDirectory() as cache:
        data = calibrate_into(cache, profile.name)
        models, pass_cv = zoo(profile, shape, variants, cache)
        out = {"fit": {name: data[name] for name in cal.FITTED},
               "calibration": {"roofline": data["fit_after"],
                               "kernel": data["kernel_model"]["fit"]},
               "kernels": data["kernel_model"]["kernels"],
               "weights": data["kernel_model"]["weights"],
               "pass_cv_median": statistics.median(pass_cv),
               "pass_cv_p90": statistics.quantiles(pass_cv, n=10)[-1],
               "pass_cv_max": max(pass_cv), "models": models}
        if held:
            out["held_out"] = held_out(held, cache, seed)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=40)
    parser.add_argument("--held-out", type=int, default=20)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--hardware", default="cpu")
    args = parser.parse_args()
    profile = settings_from_dict(compose("search", [f"hardware={args.hardware}"])).hardware
    started = time.monotonic()
    runs = [one_run(profile, (1, 16, 16), args.variants, args.held_out, 200 + run)
            for run in range(args.runs)]
    command = f"python benchmarks/predictor_accuracy.py --variants {args.variants} " \
              f"--held-out {args.held_out} --runs {args.runs} --hardware {args.hardware}"
    data = {"command": command, "commit": commit(), "machine": platform.platform(),
            "torch": torch.__version__, "profile": profile.name, "runs": runs,
            "wall_s": round(time.monotonic() - started)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "predictor_accuracy.json").write_text(json.dumps(data, indent=2) + "\n")
    text = report(data, list(cal.ZOO), cal.FITTED)
    (RESULTS / "predictor_accuracy.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
