"""Every strategy on every zoo model: one `pruning=all` search per model, read back from MLflow.

For each built-in model this runs `python -m autoprune search model=<name> pruning=all ...` in a
fresh directory and records which strategies, schedules and int8 its trials used, against what
can act on that model's groups (channel pruning needs conv groups, heads need attention, layer
removal needs residual blocks), plus failed and early-stopped trials and the exported front's
ONNX parity.
Writes benchmarks/results/strategy_coverage.{json,md}.

    python benchmarks/strategy_coverage.py --trials 16
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from mlflow.tracking import MlflowClient

from autoprune import specs
from autoprune.cli import compose
from autoprune.config import settings_from_dict
from autoprune.models import build_model
from autoprune.paths import group_choices
from autoprune.pruning import check_groups, find_groups
from autoprune.pruning.quantize import QUANTIZATIONS
from autoprune.pruning.schedule import SCHEDULES

RESULTS = Path(__file__).parent / "results"
ZOO = [name for name in group_choices("model") if name != "custom"]


def applicable(model_name: str) -> set[str]:
    """Strategies that can act on some group of the model, plus schedules and int8."""
    settings = settings_from_dict(compose("search", [f"model={model_name}", "pruning=all"]))
    torch.manual_seed(0)
    model = build_model(settings.model).eval()
    x = specs.workload(settings).example()
    groups = find_groups(model, x)
    choices, _ = check_groups(model, groups, settings.pruning.strategies, x,
                              specs.prune_settings(settings))
    names = {n for options in choices.values() for n in options}
    return names | (set(SCHEDULES) - {"oneshot"}) | (set(QUANTIZATIONS) - {"none"})


def one_model(name: str, trials: int, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder)
        start = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "autoprune", "search", f"model={name}", "pruning=all",
             "search=random", f"search.n_trials={trials}", f"cache_dir={cwd / 'cache'}",
             *extra], cwd=cwd, capture_output=True, text=True)
        wall = time.monotonic() - start
        if proc.returncode != 0:
            return {"model": name, "returncode": proc.returncode,
                    "error": proc.stderr.strip().splitlines()[-1:]}
        client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
        experiment = client.get_experiment_by_name("autoprune")
        study = client.search_runs([experiment.experiment_id], "tags.role = 'study'")[0]
        runs = client.search_runs([experiment.experiment_id],
                                  f"tags.mlflow.parentRunId = '{study.info.run_id}'")
        parity = []
        for run in runs:
            if run.data.tags.get("pareto") == "true":
                path = client.download_artifacts(run.info.run_id, "model/export.json",
                                                 str(cwd / run.info.run_id))
                parity.append(json.loads(Path(path).read_text())["onnx_max_abs_diff"])
    used = {n for r in runs for n in r.data.tags.get("strategies", "").split(",") if n}
    expected = applicable(name)
    return {
        "model": name, "returncode": 0, "wall_s": round(wall, 1), "trials": len(runs),
        "failed": sum(r.data.tags.get("state") == "failed" for r in runs),
        "stopped": sum(r.data.tags.get("state") == "stopped" for r in runs),
        "used": sorted(used), "applicable": sorted(expected),
        "missing": sorted(expected - used),
        "front": len(parity), "onnx_max_abs_diff": max(parity) if parity else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--models", nargs="*", default=ZOO)
    parser.add_argument("overrides", nargs="*", default=["hardware=jetson",
                                                         "finetune.base_steps=85"])
    args = parser.parse_args()
    rows = []
    for name in args.models:
        rows.append(one_model(name, args.trials, args.overrides))
        print(json.dumps(rows[-1]), flush=True)
    command = ("python benchmarks/strategy_coverage.py --trials "
               f"{args.trials} " + " ".join(args.overrides))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "strategy_coverage.json").write_text(json.dumps(
        {"command": command, "machine": platform.platform(), "torch": torch.__version__,
         "models": rows}, indent=2) + "\n")
    lines = [f"# Strategy coverage\n\n`{command}`\n",
             "| model | trials | failed | stopped early | strategies used | "
             "applicable, not used | front | max ONNX diff | wall s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if row["returncode"]:
            lines.append(f"| {row['model']} | search failed: {row['error']} |")
            continue
        diff = f"{row['onnx_max_abs_diff']:.1e}" if row["onnx_max_abs_diff"] is not None else "-"
        lines.append(f"| {row['model']} | {row['trials']} | {row['failed']} | "
                     f"{row['stopped']} | {', '.join(row['used'])} | "
                     f"{', '.join(row['missing']) or 'none'} | "
                     f"{row['front']} | {diff} | {row['wall_s']} |")
    (RESULTS / "strategy_coverage.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
