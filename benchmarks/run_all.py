"""Regenerate every results file in benchmarks/results with the commands that made them.

Each results file records the command (or, for files built up method by method, the commands)
that wrote it; this runs them again, in the order the files list them, so that every file is
rewritten by the current code and stamped with its commit. Benchmarks that need a device this
machine lacks (CUDA) are skipped and said. Run it on a quiet machine: most of them time
latency. A full run takes hours on 2 cores (`--list` prints the commands and stops).

    python benchmarks/run_all.py
    python benchmarks/run_all.py --only search_e2e predictor_accuracy
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
NEEDS_CUDA = {"cuda_strategies", "compiled_speedups_cuda"}


def recorded(tree: object) -> Iterator[str]:
    """Every `command` in a results file, outermost first."""
    if isinstance(tree, dict):
        if isinstance(tree.get("command"), str):
            yield tree["command"]
        for key, value in tree.items():
            if key != "command":
                yield from recorded(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from recorded(value)


def commands(only: set[str] | None = None) -> list[tuple[str, str]]:
    """(results name, command) for every results file, each command once; within a file,
    the commands that rewrite it whole before those that add to it (`--add`)."""
    found: list[tuple[str, str]] = []
    for path in sorted(RESULTS.glob("*.json")):
        if only and path.stem not in only:
            continue
        mine: list[str] = []
        for command in recorded(json.loads(path.read_text())):
            if command not in mine:
                mine.append(command)
        mine.sort(key=lambda command: "--add" in shlex.split(command))
        found.extend((path.stem, command) for command in mine)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", help="results names (file stems) to regenerate")
    parser.add_argument("--list", action="store_true", help="print the commands and stop")
    args = parser.parse_args(argv)
    todo = commands(set(args.only) if args.only else None)
    if args.list:
        print("\n".join(command for _, command in todo))
        return 0
    import torch

    failed = 0
    for index, (name, command) in enumerate(todo, start=1):
        if name in NEEDS_CUDA and not torch.cuda.is_available():
            print(f"[{index}/{len(todo)}] skipped (needs a CUDA device): {command}", flush=True)
            continue
        print(f"[{index}/{len(todo)}] {command}", flush=True)
        started = time.monotonic()
        argv_ = shlex.split(command)
        argv_[0] = sys.executable if argv_[0] == "python" else argv_[0]
        code = subprocess.run(argv_, cwd=ROOT).returncode
        failed += code != 0
        print(f"    exit {code} after {time.monotonic() - started:.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
