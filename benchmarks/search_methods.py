"""Search-quality benchmark: every search method at the same budget, several seeds.

Runs `python -m autoprune search search=<method> seed=<seed> search.n_trials=<trials>` per
model, method and seed, with measured latency on this machine's CPU (`hardware=cpu`), each in a
fresh working directory (the base model is trained once per model and seed and shared). From
the Optuna study it computes, in trial order, the hypervolume of the front in the plane
(latency / base latency, accuracy / base accuracy) against the fixed reference point
(1.0, 0.5): the area, inside [0, 1] x [0.5, 1+], that the trials so far dominate. The base
is the same for every run of a model: the median over its runs of the base model's measured
latency and validation accuracy (one study's own base measurement varied by up to 50% on this
machine, which would move its whole curve). Reports the
median and range across seeds of the final hypervolume, the search's wall time (the MLflow
study run: base-model preparation excluded), and the best validation accuracy reached at
<= 0.5x and <= 0.3x of the base latency. `tpe-no-early-stop` (TPE with search.early_stop=false)
shows what early stopping costs. The CPU latency model is calibrated here first (`python -m
autoprune calibrate hardware=cpu`), as a user would before a search that predicts: `amc`'s
action wall uses it. `--merge` keeps the committed runs of the methods not run this time.
Writes benchmarks/results/search_methods.{json,md,png}.

    python benchmarks/search_methods.py --trials 20 --seeds 0 1 2 --models resnet mlp
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
METHODS = ("tpe", "nsga2", "nsga3", "gp", "random", "uniform", "amc", "tpe-no-early-stop")
REFERENCE = (1.0, 0.5)  # (latency ratio, accuracy ratio)


def hypervolume(points: Sequence[tuple[float, float]]) -> float:
    """Area dominated by (latency ratio, accuracy ratio) points (lower latency and higher
    accuracy are better) and bounded by REFERENCE."""
    ref_lat, ref_acc = REFERENCE
    useful = sorted((lat, acc) for lat, acc in points if lat < ref_lat and acc > ref_acc)
    area, best_acc = 0.0, ref_acc
    for i, (lat, acc) in enumerate(useful):
        best_acc = max(best_acc, acc)
        right = useful[i + 1][0] if i + 1 < len(useful) else ref_lat
        area += (right - lat) * (best_acc - ref_acc)
    return area


def one_study(model: str, method: str, seed: int, trials: int, cache: Path,
              extra: Sequence[str]) -> dict:
    import optuna
    from mlflow.tracking import MlflowClient

    sampler = "tpe" if method == "tpe-no-early-stop" else method
    overrides = [f"search={sampler}", f"seed={seed}", f"search.n_trials={trials}",
                 f"model={model}", "hardware=cpu", f"cache_dir={cache}", *extra]
    if method == "tpe-no-early-stop":
        overrides.append("search.early_stop=false")
    with tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder)
        proc = subprocess.run([sys.executable, "-m", "autoprune", "search", *overrides],
                              cwd=cwd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{model}/{method}/{seed} failed: {proc.stderr[-2000:]}")
        client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
        experiment = client.get_experiment_by_name("autoprune")
        study_run = client.search_runs([experiment.experiment_id], "tags.role = 'study'")[0]
        name = optuna.get_all_study_names(f"sqlite:///{cwd / 'optuna.db'}")[0]
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{cwd / 'optuna.db'}")
        trials_ = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    states = [t.state.name for t in trials_]
    return {"model": model, "method": method, "seed": seed,
            "trials": [[t.number, t.state.name, *(t.values or [None, None])] for t in trials_],
            "wall_s": (study_run.info.end_time - study_run.info.start_time) / 1000,
            "base_accuracy": study_run.data.metrics["base_accuracy"],
            "base_latency_ms": study_run.data.metrics["base_latency_ms"],
            "complete": states.count("COMPLETE"), "pruned": states.count("PRUNED"),
            "failed": states.count("FAIL")}


def score(run: dict, base_acc: float, base_lat: float) -> None:
    """Add the hypervolume curve and the best accuracies at 0.5x and 0.3x latency to `run`,
    relative to the model's common base."""
    points, curve = [], []
    for _number, state, accuracy, latency in run["trials"]:
        if state == "COMPLETE":
            points.append((latency / base_lat, accuracy / base_acc))
        curve.append(hypervolume(points))

    def best_at(fraction: float) -> float | None:
        within = [acc * base_acc for lat, acc in points if lat <= fraction]
        return max(within) if within else None

    run.update(curve=curve, hypervolume=curve[-1], **{"best_acc_0.5x": best_at(0.5),
                                                      "best_acc_0.3x": best_at(0.3)})


def _spread(values: Sequence[float | None], scale: float = 1.0, digits: int = 3) -> str:
    real = [v for v in values if v is not None]
    if not real:
        return "-"
    text = (f"{scale * statistics.median(real):.{digits}f} [{scale * min(real):.{digits}f}, "
            f"{scale * max(real):.{digits}f}]")
    return text if len(real) == len(values) else f"{text} ({len(real)}/{len(values)})"


def plot(runs: list[dict], models: Sequence[str], methods: Sequence[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 4.5), dpi=110,
                             squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        for method in methods:
            curves = [r["curve"] for r in runs if r["model"] == model and r["method"] == method]
            if not curves:
                continue
            length = min(len(c) for c in curves)
            xs = list(range(1, length + 1))
            med = [statistics.median(c[i] for c in curves) for i in range(length)]
            lo = [min(c[i] for c in curves) for i in range(length)]
            hi = [max(c[i] for c in curves) for i in range(length)]
            line, = ax.plot(xs, med, label=method, linewidth=1.6)
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.12)
        ax.set_title(f"{model} on digits, measured CPU latency (median, min-max over seeds)",
                     fontsize=9)
        ax.set_xlabel("trials")
        ax.set_ylabel("hypervolume (latency/base <= 1, accuracy/base >= 0.5)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=["resnet", "mlp"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--merge", action="store_true",
                        help="keep the committed runs of the methods not run now")
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides")
    args = parser.parse_args()
    started = time.monotonic()
    runs = []
    with tempfile.TemporaryDirectory() as caches:
        calibration = Path(caches) / "calibration" / "cpu.json"
        subprocess.run([sys.executable, "-m", "autoprune", "calibrate", "hardware=cpu",
                        f"cache_dir={caches}"], cwd=caches, check=True, capture_output=True)
        for model in args.models:
            (Path(caches) / model / "calibration").mkdir(parents=True)
            shutil.copy(calibration, Path(caches) / model / "calibration" / "cpu.json")
            for seed in args.seeds:
                for method in args.methods:
                    run = one_study(model, method, seed, args.trials,
                                    Path(caches) / model, args.overrides)
                    runs.append(run)
                    print(json.dumps({k: v for k, v in run.items() if k != "trials"}),
                          flush=True)
    command = (f"python benchmarks/search_methods.py --trials {args.trials} --seeds "
               f"{' '.join(map(str, args.seeds))} --models {' '.join(args.models)}"
               + (f" --methods {' '.join(args.methods)}" if args.methods != list(METHODS)
                  else "") + (" -- " + " ".join(args.overrides) if args.overrides else ""))
    RESULTS.mkdir(exist_ok=True)
    committed = RESULTS / "search_methods.json"
    if args.merge and committed.is_file():
        previous = json.loads(committed.read_text())
        kept = [r for r in previous["runs"] if r["method"] not in args.methods]
        runs = kept + runs
        command = f"{previous['command']}; then {command} --merge"
        args.methods = [m for m in METHODS if any(r["method"] == m for r in runs)]
        args.models = list(dict.fromkeys(r["model"] for r in runs))
        args.seeds = sorted({r["seed"] for r in runs})
    bases = {}
    for model in args.models:
        mine = [r for r in runs if r["model"] == model]
        bases[model] = (statistics.median(r["base_accuracy"] for r in mine),
                        statistics.median(r["base_latency_ms"] for r in mine))
        for r in mine:
            score(r, *bases[model])
    (RESULTS / "search_methods.json").write_text(json.dumps(
        {"command": command, "machine": platform.platform(), "reference": REFERENCE,
         "runs": runs, "wall_s": round(time.monotonic() - started)}, indent=2) + "\n")
    plot(runs, args.models, args.methods, RESULTS / "search_methods.png")
    lines = ["# Search methods at equal budget\n", f"`{command}`\n",
             f"{args.trials} trials per study, seeds {args.seeds}; measured CPU latency. "
             "Hypervolume of the front in (latency / base, accuracy / base) against the "
             f"reference point {REFERENCE} (higher is better). Each cell: median [min, max] over "
             "seeds; a count in parentheses says how many seeds reached that latency at all.\n",
             "![hypervolume against trials](search_methods.png)\n"]
    for model in args.models:
        base = [r for r in runs if r["model"] == model]
        accuracy = _spread([r["base_accuracy"] for r in base], 100, 2)
        latency = _spread([r["base_latency_ms"] for r in base])
        lines += [f"## {model} (base, measured by each study: val accuracy {accuracy}%, "
                  f"latency {latency} ms; common reference: {100 * bases[model][0]:.2f}%, "
                  f"{bases[model][1]:.3f} ms)\n",
                  "| method | hypervolume | best acc at <= 0.5x latency (%) | best acc at <= 0.3x "
                  "latency (%) | search wall time (s) | trials stopped early |",
                  "|---|---|---|---|---|---|"]
        for method in args.methods:
            rs = [r for r in base if r["method"] == method]
            if not rs:
                continue
            lines.append(
                f"| {method} | {_spread([r['hypervolume'] for r in rs])} | "
                f"{_spread([r['best_acc_0.5x'] for r in rs], 100, 2)} | "
                f"{_spread([r['best_acc_0.3x'] for r in rs], 100, 2)} | "
                f"{_spread([r['wall_s'] for r in rs], 1, 0)} | "
                f"{_spread([r['pruned'] for r in rs], 1, 0)} |")
        lines.append("")
    (RESULTS / "search_methods.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
