"""The language-model quickstart, `python -m autoprune search task=language_model hardware=cpu`,
from a fresh working directory and cache (base training included), once per seed; then the
fastest front model within 5% of the reference perplexity (the better of the base model and
its fine-tuned twin) is timed again against the base model, interleaved in shuffled rounds in
this quiet process: a stricter measurement than the study's own.

    python benchmarks/language_model.py --seeds 0 1 2 --rounds 7

Writes benchmarks/results/language_model.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

from common import RESULTS, commit, machine, save_runs, search, spread

LIMIT = 0.05  # at most this much higher perplexity than the reference


def remeasure(folder: Path, client, study, trial, rounds: int, seed: int) -> list[float]:  # noqa: ANN001
    """Base latency over the trial's, per round (both measured in each round, in a shuffled
    order), with the study's own measurement settings."""
    import torch

    from autoprune import specs
    from autoprune.commands.apply import study_settings
    from autoprune.export import load_pruned
    from autoprune.hardware.measure import measure_latency
    from autoprune.models.base import prepare_base_model

    settings = study_settings(client, study, str(folder / "cache"))
    workload = specs.workload(settings)
    base = prepare_base_model(settings.model, settings.data,
                              specs.train_spec(settings, base=True), workload,
                              settings.cache_dir, print).model
    path = Path(client.download_artifacts(trial.info.run_id, "model", str(folder / "dl")))
    pruned = load_pruned(path / "pruned.pt").model
    example = workload.example()
    order = random.Random(seed)
    ratios = []
    torch.set_num_threads(settings.hardware.threads)
    for _ in range(rounds):
        models = [("base", base), ("pruned", pruned)]
        order.shuffle(models)
        ms = {name: measure_latency(model, example, settings.hardware).median_ms
              for name, model in models}
        ratios.append(ms["base"] / ms["pruned"])
    return ratios


def one_run(seed: int, rounds: int, extra: list[str]) -> dict:
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        wall, study, trials = search(folder, "task=language_model", "hardware=cpu",
                                     f"seed={seed}", *extra)
        m = study.data.metrics
        reference = min(m["base_perplexity"], m.get("base_perplexity_finetuned", float("inf")))
        front = [t for t in trials if t.data.tags.get("pareto") == "true"]
        close = [t for t in front if t.data.metrics["perplexity"] <= (1 + LIMIT) * reference]
        best = max(close, key=lambda t: t.data.metrics["speedup"]) if close else None
        client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
        again = remeasure(folder, client, study, best, rounds, seed) if best else []
        log = (folder / "search.log").read_text().splitlines()
    return {
        "seed": seed, "wall_s": round(wall, 1), "trials": len(trials),
        "complete": sum(t.data.tags.get("state") == "complete" for t in trials),
        "stopped": sum(t.data.tags.get("state") == "stopped" for t in trials),
        "pareto": len(front), "base_perplexity": m["base_perplexity"],
        "base_perplexity_finetuned": m.get("base_perplexity_finetuned"),
        "base_test_perplexity": m["base_test_perplexity"],
        "base_latency_ms": m["base_latency_ms"], "base_latency_cv": m["base_latency_cv"],
        "best_speedup_within_5pct": best.data.metrics["speedup"] if best else None,
        "its_perplexity": best.data.metrics["perplexity"] if best else None,
        "its_test_perplexity": best.data.metrics.get("test_perplexity") if best else None,
        "its_policy": best.data.tags.get("strategies") if best else None,
        "its_latency_ms": best.data.metrics["latency_ms"] if best else None,
        "remeasured_speedups": again,
        "timeline": [line for line in log if " steps in " in line or "Pareto front" in line],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args()
    made_at = commit()
    runs = []
    for seed in args.seeds:
        runs.append(one_run(seed, args.rounds, args.overrides))
        print(json.dumps(runs[-1]), flush=True)
    command = "python benchmarks/language_model.py " + " ".join(sys.argv[1:])
    save_runs("language_model", command, made_at, runs)
    lines = [f"Command: `{command}` at commit {made_at}, {machine()}; fresh cache and "
             "working directory every run, base training included.", "",
             "| seed | wall time | trials (stopped) | base val ppl (fine-tuned twin) | "
             "fastest front model within 5%: speedup in the study | re-measured, "
             "median [min, max] of rounds | its val ppl | its test ppl (base) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(
            f"| {r['seed']} | {r['wall_s']:.0f} s | {r['trials']} ({r['stopped']}) | "
            f"{r['base_perplexity']:.3f} ({r['base_perplexity_finetuned']:.3f}) | "
            f"{r['best_speedup_within_5pct'] or 0:.2f}x | "
            f"{spread(r['remeasured_speedups'])}x | {r['its_perplexity'] or 0:.3f} | "
            f"{r['its_test_perplexity'] or 0:.3f} ({r['base_test_perplexity']:.3f}) |")
    walls = [r["wall_s"] for r in runs]
    lines += ["", f"Wall time median {statistics.median(walls):.0f} s "
              f"[{min(walls):.0f}, {max(walls):.0f}]."]
    (RESULTS / "language_model.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
