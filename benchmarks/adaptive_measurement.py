"""Adaptive measurement against measuring every trial: what it saves and what it costs.

For each seed, the default CPU study with `--trials` trials runs twice from the same cache,
`hardware.measure_policy=all` and `=adaptive` (in alternating order), and each is read back
from MLflow: the share of its trials it measured, the learnt latency model's error on the
trials it measured (estimated before each measurement), and the hypervolume of its front,
which every study measures again at its end (an adaptive study measures every model on its
front, predicted ones included), against strict references (0.9 and 0.97 of the reference
accuracy; latency relative to the study's own base). Writes
benchmarks/results/adaptive_measurement.{json,md} with the command and commit.

    python benchmarks/adaptive_measurement.py --seeds 0 1 2 3 --trials 64
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import RESULTS, commit, machine, save_runs, search, spread
from search_methods import FLOORS, hypervolume

POLICIES = ("all", "adaptive")


def one_study(policy: str, seed: int, trials: int, cache: Path) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder)
        shutil.copytree(cache, cwd / "cache")
        wall, study, runs = search(cwd, "hardware=cpu", f"hardware.measure_policy={policy}",
                                   f"seed={seed}", f"search.n_trials={trials}")
    m = study.data.metrics
    reference = max(m["base_accuracy"], m.get("base_accuracy_finetuned", 0.0))
    done = [r for r in runs if r.data.tags.get("state") == "complete"]
    front = [r for r in done if r.data.tags.get("pareto") == "true"]
    points = [(1.0 / r.data.metrics["speedup"], r.data.metrics["accuracy"] / reference)
              for r in front]
    tried = [r for r in runs if r.data.tags.get("state") in ("complete", "stopped")]
    measured = m.get("latency_measured_trials", float(len(tried)))
    return {"policy": policy, "seed": seed, "wall_s": round(wall, 1), "trials": len(runs),
            "measured": measured, "measured_share": measured / max(len(tried), 1),
            "model_error": m.get("latency_model_error"),
            "measured_at_front": m.get("latency_measured_at_front", 0.0),
            "front_sources": sorted({r.data.tags.get("latency_source", "") for r in front}),
            "share_latency": m.get("share_latency", 0.0) + m.get("share_gate", 0.0),
            "stopped": sum(r.data.tags.get("state") == "stopped" for r in runs),
            "steps": sum(r.data.metrics.get("steps", 0.0) for r in tried),
            "time_trials_s": m.get("time_trials_s"), "time_front_s": m.get("time_front_s"),
            "time_train_s": m.get("time_trials_train_s"),
            **{f"hv_{f}": hypervolume(points, f) for f in FLOORS}}


def report(result: dict) -> str:
    runs = result["runs"]
    lines = ["# Adaptive measurement against measuring every trial\n",
             f"Command: `{result['command']}` at commit {result['commit']}, "
             f"{result['machine']}; median [min, max] over seeds.\n",
             "| policy | trials measured | latency model error (measured trials) | "
             "front models measured only at the end | hv q>=0.9 | hv q>=0.97 | "
             "timing and gate share of the slots | trials stopped early | fine-tuning steps | "
             "training s (all trials) | trials stage s | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for policy in POLICIES:
        mine = [r for r in runs if r["policy"] == policy]
        errors = [r["model_error"] for r in mine if r["model_error"] is not None]
        lines.append(
            f"| {policy} | {spread([100 * r['measured_share'] for r in mine], 0)}% | "
            + (f"{spread([100 * e for e in errors], 1)}% | " if errors else "- | ")
            + f"{spread([r['measured_at_front'] for r in mine], 0)} | "
            + f"{spread([r['hv_0.9'] for r in mine], 4)} | "
            + f"{spread([r['hv_0.97'] for r in mine], 4)} | "
            + f"{spread([100 * r['share_latency'] for r in mine], 1)}% | "
            + f"{spread([r['stopped'] for r in mine], 0)} | "
            + f"{spread([r['steps'] for r in mine], 0)} | "
            + f"{spread([r['time_train_s'] for r in mine], 0)} | "
            + f"{spread([r['time_trials_s'] for r in mine], 0)} | "
            + f"{spread([r['wall_s'] for r in mine], 0)} |")
    lines.append("\nAdaptive over all, per seed (hypervolume ratio at q>=0.9 / q>=0.97):")
    for seed in sorted({r["seed"] for r in runs}):
        pair = {r["policy"]: r for r in runs if r["seed"] == seed}
        if len(pair) == 2:
            ratios = [pair["adaptive"][f"hv_{f}"] / pair["all"][f"hv_{f}"]
                      if pair["all"][f"hv_{f}"] else float("nan") for f in FLOORS]
            lines.append(f"- seed {seed}: " + " / ".join(f"{x:.3f}" for x in ratios))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--trials", type=int, default=64)
    args = parser.parse_args()
    made_at = commit()
    runs = []
    with tempfile.TemporaryDirectory() as caches:
        cache = Path(caches) / "cache"
        # The base model, trained once, shared by every study.
        subprocess.run([sys.executable, "-m", "autoprune", "search", "hardware=cpu",
                        "search.n_trials=1", f"cache_dir={cache}"], cwd=caches, check=True,
                       capture_output=True)
        for index, seed in enumerate(args.seeds):
            order = POLICIES if index % 2 == 0 else POLICIES[::-1]
            for policy in order:
                runs.append(one_study(policy, seed, args.trials, cache))
                print(runs[-1], flush=True)
    command = (f"python benchmarks/adaptive_measurement.py --seeds "
               f"{' '.join(map(str, args.seeds))} --trials {args.trials}")
    save_runs("adaptive_measurement", command, made_at, runs)
    result = {"command": command, "commit": made_at, "machine": machine(), "runs": runs}
    (RESULTS / "adaptive_measurement.md").write_text(report(result))
    print(report(result))
    print("median measured share (adaptive):", statistics.median(
        r["measured_share"] for r in runs if r["policy"] == "adaptive"))


if __name__ == "__main__":
    main()
