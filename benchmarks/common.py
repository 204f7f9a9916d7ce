"""What the benchmarks share: running a search as a user would, the commit that made a
result, and medians with their spread."""

from __future__ import annotations

import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"


def commit() -> str:
    """The project's commit (`+dirty` with uncommitted changes to tracked files other than
    results: a run that adds to a results file of an earlier run is still made by the code)."""
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain",
                            "--untracked-files=no", "--", ".", ":(exclude)benchmarks/results"],
                           capture_output=True, text=True).stdout
    return head + ("+dirty" if dirty.strip() else "")


def machine() -> str:
    import os

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def search(cwd: Path, *overrides: str) -> tuple[float, Any, list]:
    """Run `python -m autoprune search <overrides>` in `cwd` (with its own cache); return the
    wall time, the study run and its trial runs."""
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "autoprune", "search",
                           f"cache_dir={cwd / 'cache'}", *overrides],
                          cwd=cwd, capture_output=True, text=True)
    wall = time.monotonic() - start
    (cwd / "search.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"search failed ({proc.returncode}): {proc.stderr[-2000:]}")
    client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("autoprune")
    study = client.search_runs([experiment.experiment_id], "tags.role = 'study'")[0]
    trials = client.search_runs([experiment.experiment_id],
                                f"tags.mlflow.parentRunId = '{study.info.run_id}'")
    return wall, study, trials


def spread(values: list[float], digits: int = 2) -> str:
    """median [min, max] of the values that are there."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return (f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}, "
            f"{max(values):.{digits}f}]")


def save_runs(name: str, command: str, made_at: str, runs: Any) -> None:
    """Write benchmarks/results/<name>.json: the command, the commit that made it (taken
    before anything was written: writing results would mark it dirty), the machine, runs."""
    import json

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(
        {"command": command, "commit": made_at, "machine": machine(), "runs": runs},
        indent=2))


def kept_results(name: str, key: str) -> dict[str, Any]:
    """The entries under `key` of benchmarks/results/<name>.json (empty when there is none):
    a run of some of them keeps the others."""
    import json

    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()).get(key, {}) if path.exists() else {}


def write_results(name: str, key: str, entries: dict[str, Any]) -> None:
    """Write benchmarks/results/<name>.json as {key: entries}."""
    import json

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({key: entries}, indent=2) + "\n")
