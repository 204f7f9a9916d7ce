"""End-to-end search benchmark: wall time of the README's main command and what the front holds.

Runs `python -m autoprune search hardware=<profile>` from a fresh working directory and a fresh
base-model cache (so the first-run training is included), `--repeats` times per profile, and
reads the study back from MLflow. "Within one point" is measured from the better of the base
model and its fine-tuned twin, as the study measures its drops. Writes
benchmarks/results/search_e2e.{json,md}, each profile with the command and commit that made it
(a run of one profile keeps the others' results).

    python benchmarks/search_e2e.py --profiles jetson cpu --repeats 3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from common import RESULTS, commit, kept_results, machine, search, spread, write_results

SHARES = ("share_train", "share_latency", "share_gate", "share_evaluate", "share_report",
          "share_startup", "share_framework", "share_idle_end")


def one_run(profile: str, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        wall, study, trials = search(Path(folder), f"hardware={profile}", *extra)
    m = study.data.metrics
    reference = max(m["base_accuracy"], m.get("base_accuracy_finetuned", 0.0))
    front = [t for t in trials if t.data.tags.get("pareto") == "true"]
    close = [t for t in front if t.data.metrics["accuracy"] >= reference - 0.01 - 1e-9]
    best = max(close, key=lambda t: t.data.metrics["speedup"]) if close else None
    closer = [t for t in front if t.data.metrics["accuracy"] >= reference - 0.005 - 1e-9]
    return {
        "wall_s": round(wall, 1),
        "trials": len(trials),
        "failed": sum(t.data.tags.get("state") == "failed" for t in trials),
        "stopped": sum(t.data.tags.get("state") == "stopped" for t in trials),
        "pareto": len(front),
        "latency_sources": sorted({t.data.tags.get("latency_source", "") for t in trials}),
        "base_accuracy": m["base_accuracy"],
        "base_accuracy_finetuned": m.get("base_accuracy_finetuned"),
        "base_test_accuracy": m["base_test_accuracy"],
        "base_latency_ms": m["base_latency_ms"],
        "best_speedup_within_1pt": best.data.metrics["speedup"] if best else None,
        "best_speedup_within_half_pt": max((t.data.metrics["speedup"] for t in closer),
                                           default=None),
        "its_accuracy": best.data.metrics["accuracy"] if best else None,
        "its_test_accuracy": best.data.metrics.get("test_accuracy") if best else None,
        "its_latency_ms": best.data.metrics["latency_ms"] if best else None,
        "its_latency_cv": best.data.metrics["latency_cv"] if best else None,
        **{k: m[k] for k in SHARES},
        # The trials stage's seconds outside any trial: Tune starting the first trials'
        # workers (a process each, importing torch) and winding down after the last.
        "outside_trials_s": round(m["time_trials_s"] - (
            max(t.info.end_time for t in trials) - min(t.info.start_time for t in trials))
            / 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="+", default=["jetson", "cpu"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    parser.add_argument("--report", action="store_true",
                        help="only rewrite the markdown table from the results file")
    args = parser.parse_args()
    made_at = commit()
    command = "python benchmarks/search_e2e.py " + " ".join(sys.argv[1:])
    profiles = kept_results("search_e2e", "profiles")
    for profile in [] if args.report else args.profiles:
        results = []
        for i in range(args.repeats):
            result = one_run(profile, args.overrides)
            print(f"{profile} run {i + 1}/{args.repeats}: {json.dumps(result)}", flush=True)
            results.append(result)
        profiles[profile] = {"command": command, "commit": made_at, "machine": machine(),
                             "runs": results}
    if not args.report:
        write_results("search_e2e", "profiles", profiles)
    report(profiles)


def report(profiles: dict) -> None:
    """Write (and print) benchmarks/results/search_e2e.md from the profiles' results."""
    lines = ["Fresh cache and working directory every run; median [min, max] over runs.", "",
             "| profile | runs | wall time (s) | trials (stopped) | Pareto trials | latency | "
             "best speedup within 0.5 pt | best speedup within 1 pt of the reference | "
             "its val acc (base, fine-tuned twin) | its test acc (base) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for profile, entry in profiles.items():
        results = entry["runs"]
        sources = "/".join(sorted({s for r in results for s in r["latency_sources"]}))
        first = results[0]
        lines.append(
            f"| {profile} | {len(results)} | {spread([r['wall_s'] for r in results], 0)} | "
            f"{spread([r['trials'] for r in results], 0)} "
            f"({spread([r['stopped'] for r in results], 0)}) | "
            f"{spread([r['pareto'] for r in results], 0)} | {sources} | "
            f"{within([r['best_speedup_within_half_pt'] for r in results])} | "
            f"{spread([r['best_speedup_within_1pt'] for r in results])}x | "
            f"{spread([100 * r['its_accuracy'] for r in results if r['its_accuracy']])}% "
            f"({100 * first['base_accuracy']:.2f}%, "
            f"{100 * (first['base_accuracy_finetuned'] or 0):.2f}%) | "
            f"{spread([100 * r['its_test_accuracy'] for r in results if r['its_test_accuracy']])}"
            f"% ({100 * first['base_test_accuracy']:.2f}%) |")
    lines += ["", "Where the trial slots' time went (% of the trials' wall time x "
              "search.concurrency; median [min, max]):", "",
              "| profile | training | timing latency | at the gate | evaluating | reports "
              "waiting on Tune | slots waiting for their first trial | framework (those two "
              "included) | idle at the end (none left to start) | seconds outside any trial |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for profile, entry in profiles.items():
        runs = [r for r in entry["runs"] if all(k in r for k in SHARES)]
        if runs:
            cells = " | ".join(spread([100 * r[k] for r in runs], 1) for k in SHARES)
            lines.append(f"| {profile} | {cells} | "
                         f"{spread([r['outside_trials_s'] for r in runs], 1)} |")
    lines += [""] + [f"- {name}: `{entry['command']}` at commit {entry['commit']}, "
                     f"{entry['machine']}" for name, entry in profiles.items()]
    (RESULTS / "search_e2e.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def within(values: list[float | None]) -> str:
    """The spread of the speedups there are, with how many runs had one."""
    real = [v for v in values if v is not None]
    if not real:
        return "none"
    text = f"{spread(real)}x"
    return text if len(real) == len(values) else f"{text} ({len(real)} of {len(values)} runs)"


if __name__ == "__main__":
    main()
