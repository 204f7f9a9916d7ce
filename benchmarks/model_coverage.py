"""Which groups and strategies autoprune finds on models as they are: the built-in zoo, small
randomly initialised Hugging Face `transformers` models, and torchvision's and timm's
classifiers where those import (the model list is benchmarks/coverage_models.py).

    python benchmarks/model_coverage.py [--models NAME ...] [--timeout 300]

Each model runs in its own subprocess (a hang is recorded as a timeout at the step it was in,
with what came before kept). Per model: the seconds `find_groups` takes and its groups per kind;
per strategy, on how many of the groups of its kinds `check_groups` at ratio 0.5 lets it act
(with the reasons it gave for the others); for a strategy usable on at least one group, the
model with every usable group pruned at 0.5 (a strategy's fixed ratio where it has one, so
`layer` removes every usable block): whether it runs with its original output shape, its MACs,
parameters and nonzero parameters as fractions of the base model's, and the largest absolute
difference between ONNX Runtime's output and PyTorch's (`n/a: reason` when export fails).
Any failure is recorded as a one-line `Type: message` and the run goes on.

In the table a cell reads `usable/eligible` groups, then the MACs left when every usable group
is pruned (`x` when the pruned model fails; see "What fails"). Writes
benchmarks/results/model_coverage.{json,md}; a run with --models keeps the other models' rows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

from common import RESULTS, commit, kept_results, machine
from coverage_models import ATTENTION, MODELS, import_error

RATIO = 0.5


def reason(exc: BaseException) -> str:
    """`Type: message` on one line, cut to 240 characters."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:240]}"


class Record(dict):
    """A model's results, written to `path` after each step so a timeout keeps them."""

    def __init__(self, path: Path, **fields: Any) -> None:
        super().__init__(**fields)
        self.path = path

    def step(self, name: str) -> None:
        self["step"] = name
        self.path.write_text(json.dumps(self))


def onnx_parity(model: Any, example: Any) -> tuple[float | str, float | None]:
    """Largest |ONNX Runtime - PyTorch| over the example (or "n/a: <reason>") and the largest
    |PyTorch output|, the scale the difference is read against."""
    import onnxruntime as ort
    import torch

    from autoprune.export import export_onnx
    from autoprune.tasks import call_model, model_output

    tensors = dict(example) if isinstance(example, dict) else {"input": example}
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.onnx"
            export_onnx(model, example, path)
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            names = [i.name for i in session.get_inputs()]
            rest = iter(v for k, v in tensors.items() if k not in names)
            feed = {n: (tensors[n] if n in tensors else next(rest)).numpy() for n in names}
            onnx_out = torch.from_numpy(session.run(None, feed)[0])
        with torch.no_grad():
            torch_out = model_output(call_model(model, example))
        return float((onnx_out - torch_out).abs().max()), float(torch_out.abs().max())
    except Exception as exc:  # an export failure is a finding, not a crash
        return f"n/a: {reason(exc)}", None


def prune_all(model: Any, groups: list, ids: list[str], strategy: str, example: Any,
              base: dict[str, float], shape: tuple) -> dict[str, Any]:
    """Prune every group in `ids` with `strategy`; whether it runs, what is left, ONNX parity."""
    import torch

    from autoprune.pruning import STRATEGIES, Decision, Policy, apply_policy, model_stats
    from autoprune.tasks import call_model, model_output

    fixed = STRATEGIES[strategy].fixed_ratio
    policy = Policy({g: Decision(strategy, RATIO if fixed is None else fixed) for g in ids})
    entry: dict[str, Any] = {"runs": False}
    try:
        pruned = apply_policy(model, policy, groups, example).model
    except Exception as exc:
        return {**entry, "error": f"apply_policy: {reason(exc)}"}
    try:
        with torch.no_grad():
            out = tuple(model_output(call_model(pruned, example)).shape)
    except Exception as exc:
        return {**entry, "error": f"forward: {reason(exc)}"}
    if out != shape:
        return {**entry, "error": f"output shape {out}, base {shape}"}
    entry["runs"] = True
    try:
        stats = model_stats(pruned, example)
        entry.update({k + "_left": round(stats[k] / base[k], 4) if base[k] else None
                      for k in ("macs", "params", "nonzero_params")})
    except Exception as exc:
        entry["stats_error"] = f"model_stats: {reason(exc)}"
    entry["onnx"], entry["output_abs_max"] = onnx_parity(pruned, example)
    return entry


def try_strategy(record: Record, model: Any, groups: list, name: str, example: Any,
                 base: dict[str, float], shape: tuple) -> None:
    from autoprune.pruning import STRATEGIES, check_groups

    eligible = [g for g in groups if g.kind in STRATEGIES[name].kinds]
    entry: dict[str, Any] = {"eligible": len(eligible), "usable": 0}
    record["strategies"][name] = entry
    if not eligible:
        return
    record.step(f"check_groups {name}")
    start = time.monotonic()
    try:
        allowed, rejected = check_groups(model, groups, [name], example, ratios=(RATIO,))
    except Exception as exc:
        entry["error"] = f"check_groups: {reason(exc)}"
        return
    entry["check_s"] = round(time.monotonic() - start, 2)
    ids = [g.id for g in eligible if name in allowed.get(g.id, ())]
    entry["usable"] = len(ids)
    if rejected:
        common = Counter(r for r in rejected.values()).most_common(3)
        entry["rejected"] = [f"{n}x {r}" for r, n in common]
    if ids:
        record.step(f"prune {name}")
        entry["pruned"] = prune_all(model, groups, ids, name, example, base, shape)


def find(record: Record, model: Any, example: Any) -> list:
    """`find_groups` timed, its groups counted per kind and its warnings kept."""
    from autoprune.pruning import find_groups
    from autoprune.pruning.groups import KINDS

    record.step("find_groups")
    start = time.monotonic()
    groups: list = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            groups = find_groups(model, example)
        except Exception as exc:
            record["find_groups_error"] = reason(exc)
    record["find_groups_s"] = round(time.monotonic() - start, 2)
    said = {" ".join(str(w.message).split())[:240] for w in caught
            if w.category.__module__.startswith("autoprune")}
    if said:
        record["find_groups_warnings"] = sorted(said)
    record["groups"] = {k: sum(g.kind == k for g in groups) for k in KINDS}
    return groups


def measure(name: str, out: Path) -> None:
    """The child process: every step on one model, its record written to `out` as it goes."""
    import torch

    from autoprune.pruning import STRATEGIES, model_stats
    from autoprune.tasks import call_model, model_output

    spec = MODELS[name]
    record = Record(out, model=name, family=spec.family, inputs=spec.inputs, strategies={})
    record.step("build")
    torch.manual_seed(0)
    model, example = spec.build()
    record["attn_implementation"] = getattr(getattr(model, "config", None),
                                            "_attn_implementation", None)
    with torch.no_grad():
        shape = tuple(model_output(call_model(model, example)).shape)
    record.step("model_stats")
    try:
        base = model_stats(model, example)
        record["params"] = int(base["params"])
    except Exception as exc:
        record["stats_error"] = f"model_stats: {reason(exc)}"
        base = {"macs": 0.0, "params": 0.0, "nonzero_params": 0.0}
    record.step("onnx")
    record["onnx"], record["output_abs_max"] = onnx_parity(model, example)
    groups = find(record, model, example)
    for strategy in STRATEGIES:
        try_strategy(record, model, groups, strategy, example, base, shape)
    record.step("done")


def run_one(name: str, timeout: float) -> dict[str, Any]:
    """Measure one model in a subprocess; a timeout or crash is recorded with the step."""
    spec = MODELS[name]
    missing = import_error(spec.family)
    if missing:
        return {"model": name, "family": spec.family, "skipped": missing}
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "record.json"
        start = time.monotonic()
        try:
            proc = subprocess.run([sys.executable, __file__, "--child", name, "--out", str(out)],
                                  capture_output=True, text=True, timeout=timeout)
            failure = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
        except subprocess.TimeoutExpired:
            proc, failure = None, None
        record = json.loads(out.read_text()) if out.exists() else {"model": name,
                                                                    "step": "start"}
    record["wall_s"] = round(time.monotonic() - start, 1)
    if proc is None:
        record["timeout"] = f"after {timeout:.0f} s, in {record['step']}"
    elif record.get("step") != "done":
        record["crash"] = f"in {record.get('step')}: {failure}"
    return record


def save(rows: dict[str, dict], command: str, made_at: str, timeout: float) -> None:
    import torch
    import transformers
    from coverage_report import markdown

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "model_coverage.json").write_text(json.dumps(
        {"command": command, "commit": made_at, "machine": machine(),
         "torch": torch.__version__, "transformers": transformers.__version__,
         "attn_implementation": ATTENTION, "timeout_s": timeout, "models": rows},
        indent=2) + "\n")
    (RESULTS / "model_coverage.md").write_text(markdown(rows, command, made_at))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure(args.child, args.out)
        return
    made_at = commit()
    command = "python benchmarks/model_coverage.py" + (
        f" --models {' '.join(args.models)}" if args.models != list(MODELS) else "") + (
        f" --timeout {args.timeout:g}" if args.timeout != 300 else "")
    kept = kept_results("model_coverage", "models") if args.models != list(MODELS) else {}
    rows = dict(kept)
    for name in args.models:
        rows[name] = {**run_one(name, args.timeout), "commit": made_at}
        print(json.dumps(rows[name]), flush=True)
        ordered = {n: rows[n] for n in MODELS if n in rows}
        save(ordered, command, made_at, args.timeout)


if __name__ == "__main__":
    main()
