"""Search methods under the same conditions, judged by the figures a user decides by.

Runs `python -m autoprune search search=<method> seed=<seed> search.n_trials=<trials>
search.seed_ratios=[]` per workload, method and seed, with measured latency on this machine's
CPU (`hardware=cpu`), each in a fresh working directory. Every method gets the same seeds, no
enqueued baseline policies, the same early stopping and the same calibrated CPU latency model
(calibrated here first and shared: `amc`'s action wall uses it, the others may ignore it). The
base model is trained once per workload and seed and shared by the methods.

`uniform` is the strong baseline a user would write by hand: one width ratio for every group
crossed with a depth (blocks removed from the deepest), spread over the same budget.

Each study's trials are read back from MLflow (latencies as the study reports them, after its
front was timed again). The metric is normalised to the study's reference (the better of the
base model and its fine-tuned twin) as a quality q: accuracy / reference, or reference /
perplexity, so higher is better for both; latency to the workload's common base latency (the
median of its studies' base measurements). Per study:

- best measured speedup within a small and a larger drop (accuracy: 0.5 and 1 point; perplexity:
  2.5% and 5% higher);
- best metric at fixed latency budgets: 0.5x, 0.33x and 0.25x of the base latency;
- hypervolume of (latency ratio, q) against strict references: q floors of 0.9 and 0.97, latency
  ratio 1;
- the fine-tuning steps the study spent, as a share of every trial fine-tuned to the end.

A method named `<method>:full` is that method with `search.early_stop=false` (no multi-fidelity
fine-tuning: every trial gets every step), the full-budget twin multi-fidelity is judged by;
`<method>+key=value` is that method with one more override (`tpe+search.rungs=[0.125,0.5]`).

Reported as the median and interquartile range over seeds, with one more row per workload,
all methods pooled: per seed, every completed trial of every method taken together and scored
as one study, the ceiling of what any one method could show on that workload.

Workloads: `resnet` (the default digits study), `gpt` (`task=language_model`) and `mobilenet`
(`model=mobilenet`, held out: no method was tuned on it). Writes benchmarks/results/search_methods.
{json,md}, each workload with the command and commit that made it (a run of one workload
keeps the others' results; with `--add`, a run of some methods keeps the workload's other
methods, each with the command and commit that made it).

    python benchmarks/search_methods.py --seeds 0 1 2 3 4 --workloads resnet gpt
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from common import RESULTS, commit, kept_results, machine, search, write_results

METHODS = ("uniform", "random", "tpe", "refine", "amc")
FULL = ":full"  # a method name ending so runs with every trial fine-tuned to the end
POOLED = "all methods, pooled"  # the row of every method's trials of a seed taken together
WORKLOADS = {  # overrides, default trials, metric, direction, (small, larger) drop
    "resnet": ([], 32, "accuracy", "maximize", (0.005, 0.01)),
    "gpt": (["task=language_model"], 24, "perplexity", "minimize", (0.025, 0.05)),
    # held out: no method was tuned on it (inverted residuals, depthwise convolutions)
    "mobilenet": (["model=mobilenet"], 32, "accuracy", "maximize", (0.005, 0.01)),
}
FLOORS = (0.9, 0.97)
BUDGETS = (0.5, 0.33, 0.25)


def hypervolume(points: Sequence[tuple[float, float]], floor: float) -> float:
    """Area dominated by (latency ratio, quality) points, lower latency and higher quality
    better, bounded by latency ratio 1 and quality `floor`."""
    useful = sorted((lat, q) for lat, q in points if lat < 1.0 and q > floor)
    area, best = 0.0, floor
    for i, (lat, q) in enumerate(useful):
        best = max(best, q)
        right = useful[i + 1][0] if i + 1 < len(useful) else 1.0
        area += (right - lat) * (best - floor)
    return area


def one_study(workload: str, method: str, seed: int, trials: int, cache: Path,
              extra: Sequence[str]) -> dict:
    overrides, _, metric, direction, _ = WORKLOADS[workload]
    name, *changes = method.removesuffix(FULL).split("+")
    if method.endswith(FULL):
        changes.append("search.early_stop=false")
    with tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder)
        shutil.copytree(cache, cwd / "cache")
        wall, study, runs = search(cwd, *overrides, "hardware=cpu", f"search={name}",
                                   f"seed={seed}", f"search.n_trials={trials}",
                                   "search.seed_ratios=[]", *extra, *changes)
        for sub in ("base", "calibration"):  # the next method of this seed reuses them
            if (cwd / "cache" / sub).is_dir():
                shutil.copytree(cwd / "cache" / sub, cache / sub, dirs_exist_ok=True)
    m = study.data.metrics
    reference = m[f"base_{metric}"]
    if f"base_{metric}_finetuned" in m:
        better = max if direction == "maximize" else min
        reference = better(reference, m[f"base_{metric}_finetuned"])
    done = [r for r in runs if r.data.tags.get("state") == "complete"]
    tried = done + [r for r in runs if r.data.tags.get("state") == "stopped"]
    steps = [r.data.metrics["steps"] for r in tried]
    return {"workload": workload, "method": method, "seed": seed, "wall_s": round(wall, 1),
            "base_latency_ms": m["base_latency_ms"], "reference": reference,
            "time_shares": {k: v for k, v in m.items() if k.startswith("share_")},
            "trials": [[r.data.metrics[metric], r.data.metrics["latency_ms"]] for r in done],
            "steps_used": sum(steps), "steps_full": max(steps, default=0) * len(tried),
            "stopped": sum(r.data.tags.get("state") == "stopped" for r in runs),
            "failed": sum(r.data.tags.get("state") == "failed" for r in runs)}


def common_base_ms(runs: list[dict]) -> float:
    """A workload's common base latency: the median of its studies' base measurements."""
    return statistics.median(r["base_latency_ms"] for r in runs)


def points(run: dict, base_ms: float) -> list[tuple[float, float]]:
    """The study's completed trials as (latency ratio to the common base, quality q)."""
    direction, ref = WORKLOADS[run["workload"]][3], run["reference"]
    return [(ms / base_ms, v / ref if direction == "maximize" else ref / v)
            for v, ms in run["trials"]]


def score(run: dict, base_ms: float) -> None:
    """The user's figures of one study, against the workload's common base latency."""
    _, _, metric, direction, drops = WORKLOADS[run["workload"]]
    ref = run["reference"]

    def within(value: float, drop: float) -> bool:
        if direction == "maximize":
            return value >= ref - drop - 1e-9
        return value <= ref * (1 + drop) + 1e-9

    for floor in FLOORS:
        run[f"hv_{floor}"] = hypervolume(points(run, base_ms), floor)
    for drop in drops:
        fits = [base_ms / ms for v, ms in run["trials"] if within(v, drop)]
        run[f"speedup_within_{drop}"] = max(fits, default=None)
    best = max if direction == "maximize" else min
    for budget in BUDGETS:
        fits = [v for v, ms in run["trials"] if ms <= budget * base_ms]
        run[f"{metric}_at_{budget}x"] = best(fits, default=None)


def iqr(values: Sequence[float | None], digits: int = 3, scale: float = 1.0) -> str:
    """median [25th, 75th percentile] of the values there are (with how many when some
    studies never got there)."""
    real = sorted(scale * v for v in values if v is not None)
    if not real:
        return "never"
    q1, q3 = (statistics.quantiles(real, n=4, method="inclusive")[i] for i in (0, 2)) \
        if len(real) > 1 else (real[0], real[0])
    text = f"{statistics.median(real):.{digits}f} [{q1:.{digits}f}, {q3:.{digits}f}]"
    return text if len(real) == len(values) else f"{text} ({len(real)}/{len(values)})"


def pooled(runs: list[dict], workload: str) -> list[dict]:
    """Per seed, every completed trial of every method of that seed taken together, scored as
    one study: what all the methods found at all their cost, a ceiling for any one of them
    (speedups and budget figures are the best of the seed's studies, each against its own
    reference; the steps and wall seconds are their sums)."""
    _, _, metric, direction, drops = WORKLOADS[workload]
    mine = [r for r in runs if r["workload"] == workload]
    base_ms = common_base_ms(mine)
    best = max if direction == "maximize" else min
    rows = []
    for seed in sorted({r["seed"] for r in mine}):
        same = [r for r in mine if r["seed"] == seed]
        row = {f"hv_{f}": hypervolume([p for r in same for p in points(r, base_ms)], f)
               for f in FLOORS}
        for key, pick in ([(f"speedup_within_{d}", max) for d in drops]
                          + [(f"{metric}_at_{b}x", best) for b in BUDGETS]):
            row[key] = pick((r[key] for r in same if r[key] is not None), default=None)
        for key in ("steps_used", "steps_full", "wall_s"):
            row[key] = sum(r[key] for r in same)
        rows.append(row)
    return rows


def table(runs: list[dict], workload: str, methods: Sequence[str]) -> list[str]:
    _, _, metric, direction, drops = WORKLOADS[workload]
    unit = "pt" if direction == "maximize" else "%"  # accuracy points, or % more perplexity
    heads = ([f"hv q>={f}" for f in FLOORS] + [f"speedup within {100 * d:g} {unit}"
                                               for d in drops]
             + [f"{metric} at {b}x latency" for b in BUDGETS]
             + ["fine-tuning steps (of full)", "wall s"])
    lines = ["| method | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    rows = [(f"`{m}`", [r for r in runs if r["workload"] == workload and r["method"] == m])
            for m in methods]
    if len(methods) > 1:
        rows.append((POOLED, pooled(runs, workload)))
    for name, mine in rows:
        if not mine:
            continue
        cells = [iqr([r[f"hv_{f}"] for r in mine], 4) for f in FLOORS]
        cells += [iqr([r[f"speedup_within_{d}"] for r in mine], 2) for d in drops]
        cells += [iqr([r[f"{metric}_at_{b}x"] for r in mine], 4) for b in BUDGETS]
        cells.append(iqr([r["steps_used"] / r["steps_full"] for r in mine], 2))
        cells.append(iqr([r["wall_s"] for r in mine], 0))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--trials", type=int, help="trials per study (default: the workload's)")
    parser.add_argument("--add", action="store_true",
                        help="keep the workload's other methods' results (each with the "
                        "command and commit that made it) and add these")
    parser.add_argument("--report", action="store_true",
                        help="only rewrite the .md from the .json (no studies run)")
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides for every study")
    args = parser.parse_args()
    if args.report:
        (RESULTS / "search_methods.md").write_text(report(kept_results("search_methods",
                                                                       "workloads")))
        return
    started, made_at = time.monotonic(), commit()
    runs = []
    with tempfile.TemporaryDirectory() as caches:
        subprocess.run([sys.executable, "-m", "autoprune", "calibrate", "hardware=cpu",
                        f"cache_dir={caches}/shared"], cwd=caches, check=True,
                       capture_output=True)
        for workload in args.workloads:
            trials = args.trials or WORKLOADS[workload][1]
            for seed in args.seeds:
                cache = Path(caches) / f"{workload}-{seed}"
                shutil.copytree(Path(caches) / "shared", cache)
                for method in args.methods:
                    run = one_study(workload, method, seed, trials, cache, args.overrides)
                    runs.append(run)
                    print(json.dumps({k: v for k, v in run.items() if k != "trials"}),
                          flush=True)
    command = ("python benchmarks/search_methods.py --seeds " + " ".join(map(str, args.seeds))
               + " --workloads " + " ".join(args.workloads)
               + (" --methods " + " ".join(args.methods) if args.methods != list(METHODS) else "")
               + (f" --trials {args.trials}" if args.trials else "")
               + (" --add" if args.add else "")
               + (" " + " ".join(args.overrides) if args.overrides else ""))
    results = kept_results("search_methods", "workloads")
    for workload in args.workloads:
        mine = [r for r in runs if r["workload"] == workload]
        made = {m: {"command": command, "commit": made_at} for m in args.methods}
        old = results.get(workload)
        if args.add and old:  # the methods run before, as they were run, beside these
            mine = [r for r in old["runs"] if r["method"] not in args.methods] + mine
            made = {**old.get("made", {m: {"command": old["command"], "commit": old["commit"]}
                                       for m in old["methods"]}), **made}
        base_ms = common_base_ms(mine)
        for run in mine:
            score(run, base_ms)
        results[workload] = {"command": command, "commit": made_at, "machine": machine(),
                             "trials": args.trials or WORKLOADS[workload][1],
                             "methods": list(made), "made": made, "runs": mine,
                             "wall_s": round(time.monotonic() - started)}
    write_results("search_methods", "workloads", results)
    (RESULTS / "search_methods.md").write_text(report(results))
    print(report(results))


def report(results: dict) -> str:
    lines = ["# Search methods under the same conditions\n",
             "Each cell: median [interquartile range] over seeds; a count in parentheses says "
             "how many studies got there at all. q is the metric relative to the study's "
             "reference (higher is better); latency relative to the workload's common base. "
             f"*{POOLED}*: per seed, the completed trials of every method above taken "
             "together and scored as one study (the best speedups and budget figures of the "
             "seed's studies; steps and wall seconds summed): what all of them found at all "
             "their cost, a ceiling for any one method.\n"]
    for workload, result in results.items():
        made = result.get("made", {m: {"command": result["command"], "commit": result["commit"]}
                                   for m in result["methods"]})
        lines += [f"## {workload}, {result['trials']} trials\n", f"{result['machine']}.\n",
                  *table(result["runs"], workload, result["methods"]), ""]
        lines += [f"- `{m}`: `{how['command']}` at commit {how['commit']}"
                  for m, how in made.items()] + [""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
