"""benchmarks/run_all.py finds every results file's commands and runs them in an order that
keeps files built up method by method whole."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from tests.benchmarks import load

ROOT = Path(__file__).resolve().parents[2]


def _run_all():
    return load("run_all")


def test_every_results_file_has_its_commands_and_each_names_a_benchmark():
    todo = _run_all().commands()
    names = {name for name, _ in todo}
    assert names == {p.stem for p in (ROOT / "benchmarks" / "results").glob("*.json")}
    for _, command in todo:
        words = shlex.split(command)
        assert words[0] == "python" and (ROOT / words[1]).is_file(), command


def test_a_file_is_rewritten_whole_before_methods_are_added_to_it(tmp_path, monkeypatch):
    run_all = _run_all()
    (tmp_path / "m.json").write_text(json.dumps({"workloads": {"w": {
        "command": "python benchmarks/m.py --methods b --add",
        "made": {"a": {"command": "python benchmarks/m.py --methods a"},
                 "b": {"command": "python benchmarks/m.py --methods b --add"}}}}}))
    monkeypatch.setattr(run_all, "RESULTS", tmp_path)
    assert run_all.commands() == [("m", "python benchmarks/m.py --methods a"),
                                  ("m", "python benchmarks/m.py --methods b --add")]
