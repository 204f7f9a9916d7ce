"""End-to-end search benchmark: wall time of the README's main command and what the front holds.

Runs `python -m autoprune search hardware=<profile>` from a fresh working directory and a fresh
base-model cache (so the first-run training is included), `--repeats` times per profile, and
reads the study back from MLflow. Writes benchmarks/results/search_e2e.{json,md}.

    python benchmarks/search_e2e.py --profiles jetson cpu --repeats 3
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

from mlflow.tracking import MlflowClient

RESULTS = Path(__file__).parent / "results"


def one_run(profile: str, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder)
        start = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "autoprune", "search", f"hardware={profile}",
             f"cache_dir={cwd / 'cache'}", *extra],
            cwd=cwd, capture_output=True, text=True,
        )
        wall = time.monotonic() - start
        if proc.returncode != 0:
            raise SystemExit(f"search failed ({proc.returncode}): {proc.stderr[-2000:]}")
        client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
        experiment = client.get_experiment_by_name("autoprune")
        study = client.search_runs([experiment.experiment_id], "tags.role = 'study'")[0]
        trials = client.search_runs([experiment.experiment_id],
                                    f"tags.mlflow.parentRunId = '{study.info.run_id}'")
    base_acc = study.data.metrics["base_accuracy"]
    front = [t for t in trials if t.data.tags.get("pareto") == "true"]
    close = [t for t in front if t.data.metrics["accuracy"] >= base_acc - 0.01]
    best = max(close, key=lambda t: t.data.metrics["speedup"]) if close else None
    return {
        "wall_s": round(wall, 1),
        "trials": len(trials),
        "failed": sum(t.data.tags.get("state") == "failed" for t in trials),
        "pareto": len(front),
        "latency_sources": sorted({t.data.tags.get("latency_source", "") for t in trials}),
        "base_accuracy": base_acc,
        "base_latency_ms": study.data.metrics["base_latency_ms"],
        "best_speedup_within_1pt": best.data.metrics["speedup"] if best else None,
        "its_accuracy": best.data.metrics["accuracy"] if best else None,
        "its_test_accuracy": best.data.metrics.get("test_accuracy") if best else None,
        "its_latency_ms": best.data.metrics["latency_ms"] if best else None,
        "its_latency_cv": best.data.metrics["latency_cv"] if best else None,
    }


def spread(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} [{min(values):.2f}, {max(values):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="+", default=["jetson", "cpu"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {}
    for profile in args.profiles:
        runs[profile] = []
        for i in range(args.repeats):
            result = one_run(profile, args.overrides)
            print(f"{profile} run {i + 1}/{args.repeats}: {json.dumps(result)}", flush=True)
            runs[profile].append(result)
    command = "python benchmarks/search_e2e.py " + " ".join(sys.argv[1:])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "search_e2e.json").write_text(json.dumps(
        {"command": command, "machine": f"{platform.processor() or platform.machine()}, "
         f"{__import__('os').cpu_count()} cores", "runs": runs}, indent=2))
    lines = [f"Command: `{command}` (fresh cache and working directory every run; "
             "median [min, max] over runs)", "",
             "| profile | runs | wall time (s) | trials | Pareto trials | latency | "
             "best speedup within 1 pt of base | its val acc (base) | its test acc |",
             "|---|---|---|---|---|---|---|---|---|"]
    for profile, results in runs.items():
        sources = "/".join(sorted({s for r in results for s in r["latency_sources"]}))
        lines.append(
            f"| {profile} | {len(results)} | {spread([r['wall_s'] for r in results])} | "
            f"{spread([r['trials'] for r in results])} | {spread([r['pareto'] for r in results])}"
            f" | {sources} | {spread([r['best_speedup_within_1pt'] for r in results])}x | "
            f"{spread([100 * r['its_accuracy'] for r in results if r['its_accuracy']])}% "
            f"({100 * results[0]['base_accuracy']:.2f}%) | "
            f"{spread([100 * r['its_test_accuracy'] for r in results if r['its_test_accuracy']])}%"
            " |")
    (RESULTS / "search_e2e.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
