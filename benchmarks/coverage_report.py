"""The markdown report of benchmarks/model_coverage.py: the coverage table, the summary lines
and the list of what fails, per model and strategy."""

from __future__ import annotations

from typing import Any

from common import machine
from coverage_models import MODELS

STRUCTURED = ("channel", "neuron", "head", "layer", "lowrank")
KINDS = ("conv", "linear", "attention", "block")
GROUPING_LIMIT_S = 10.0


def _strategies() -> list[str]:
    from autoprune.pruning import STRATEGIES

    return list(STRATEGIES)


def _cell(entry: dict[str, Any] | None, row: dict) -> str:
    if entry is None and ("timeout" in row or "crash" in row):
        return "not run"
    if not entry or not entry["eligible"]:
        return "-"
    if "error" in entry:
        return "error"
    text = f"{entry['usable']}/{entry['eligible']}"
    pruned = entry.get("pruned")
    if pruned is None:
        stopped = f"prune {entry.get('name')}" in str(row.get("timeout", row.get("crash")))
        return text + (" stopped" if stopped else "")
    if not pruned["runs"]:
        return text + " x"
    left = pruned.get("macs_left")
    return text + (f" {left:.2f}" if left is not None else " ok")


def _table(rows: dict[str, dict], names: list[str]) -> list[str]:
    lines = ["| model | family | input | base ONNX diff | find_groups s | " + " / ".join(KINDS)
             + " | " + " | ".join(names) + " |", "|---" * (6 + len(names)) + "|"]
    for model, row in rows.items():
        if "skipped" in row:
            continue
        groups = row.get("groups")
        counts = " / ".join(str(groups[k]) for k in KINDS) if groups else "-"
        cells = [_cell(_entry(row, n), row) for n in names]
        lines.append(f"| {model} | {row['family']} | {row.get('inputs', '-')} | "
                     f"{_onnx(row.get('onnx', '-'), row.get('output_abs_max'), 12)} | "
                     f"{row.get('find_groups_s', '-')} | {counts} | " + " | ".join(cells) + " |")
    return lines


def _entry(row: dict, name: str) -> dict[str, Any] | None:
    entry = row.get("strategies", {}).get(name)
    return None if entry is None else {**entry, "name": name}


def _onnx(diff: Any, scale: float | None, width: int) -> str:
    if isinstance(diff, float) and scale is not None:
        return f"{diff:.1e} of {scale:.1e}"
    return str(diff)[:width]


def _runs(row: dict, name: str) -> bool:
    return bool(row.get("strategies", {}).get(name, {}).get("pruned", {}).get("runs"))


def _usable(row: dict, name: str) -> bool:
    return row.get("strategies", {}).get(name, {}).get("usable", 0) > 0


def _share(part: list[str], whole: list[str]) -> str:
    return f"{len(part)}/{len(whole)}" + (f" ({100 * len(part) / len(whole):.0f}%)"
                                          if whole else "")


def _summary(rows: dict[str, dict], names: list[str]) -> list[str]:
    measured = {m: r for m, r in rows.items() if "skipped" not in r}
    hf = [m for m, r in measured.items() if r["family"] == "transformers"]
    lines = ["## Summary", "", f"Models measured: {len(measured)} ({len(hf)} transformers); "
             f"skipped: {len(rows) - len(measured)}.", "",
             "Share of measured models where a strategy is usable on at least one group:", ""]
    for name in names:
        usable = [m for m in measured if _usable(measured[m], name)]
        lines.append(f"- {name}: {_share(usable, list(measured))}")
    two = [m for m in hf if sum(_runs(measured[m], s) for s in STRUCTURED) >= 2]
    lines += ["", f"transformers models with >= 2 structured strategies ({', '.join(STRUCTURED)}) "
              f"whose pruned models run: {_share(two, hf)}; not: "
              f"{', '.join(m for m in hf if m not in two) or 'none'}."]
    slow = []
    for m in hf:
        took = measured[m].get("find_groups_s")
        if took is None or took > GROUPING_LIMIT_S:
            slow.append(f"{m} ({'never finished' if took is None else f'{took} s'})")
        elif "find_groups_error" in measured[m]:
            slow.append(f"{m} (failed in {took} s)")
    lines.append(f"Every transformers model grouped in <= {GROUPING_LIMIT_S:.0f} s without "
                 f"error: {'yes' if not slow else 'no: ' + ', '.join(slow)}.")
    for strategy, attr, what in (("head", "attention", "attention"),
                                 ("layer", "residual", "residual stack")):
        having = [m for m in measured if getattr(MODELS[m], attr, False)]
        yes = [m for m in having if _usable(measured[m], strategy)]
        lines.append(f"`{strategy}` usable on {_share(yes, having)} {what} models: "
                     f"{', '.join(yes) or 'none'}; not on: "
                     f"{', '.join(m for m in having if m not in yes) or 'none'}.")
    return lines + [""]


def _model_failures(model: str, row: dict) -> list[str]:
    spec, found = MODELS.get(model), row.get("groups") or {}
    out = [row[k] for k in ("timeout", "crash") if k in row]
    out += [f"{k}: {row[k]}" for k in ("find_groups_error", "stats_error") if k in row]
    out += [f"find_groups warns: {w}" for w in row.get("find_groups_warnings", [])]
    base = str(row.get("onnx", ""))
    if base.startswith("n/a"):
        out.append(f"ONNX export of the unpruned model: {base}")
    if spec and spec.attention and found and not found.get("attention"):
        out.append("no attention group")
    if spec and spec.residual and found and not found.get("block"):
        out.append("no block group")
    onnx: dict[str, list[str]] = {}
    for name, entry in row.get("strategies", {}).items():
        if "error" in entry:
            out.append(f"{name}: {entry['error']}")
        elif entry["usable"] < entry["eligible"]:
            out.append(f"{name}: {entry['usable']}/{entry['eligible']} usable; rejected "
                       + "; ".join(entry.get("rejected", [])))
        pruned = entry.get("pruned", {})
        left = [pruned.get(k + "_left") for k in ("macs", "params", "nonzero_params")]
        if pruned.get("runs") and all(v is not None and v >= 0.999 for v in left):
            out.append(f"{name}: usable on {entry['usable']} groups but removes nothing "
                       "(MACs, parameters and nonzero parameters all unchanged)")
        for key in ("error", "stats_error"):
            if key in pruned:
                out.append(f"{name} pruned: {pruned[key]}")
        if str(pruned.get("onnx", "")).startswith("n/a"):
            onnx.setdefault(pruned["onnx"], []).append(name)
    return out + [f"ONNX export ({', '.join(n)}): "
                  + ("as the unpruned model's" if r == base else r) for r, n in onnx.items()]


def _failures(rows: dict[str, dict]) -> list[str]:
    lines, skipped = ["## What fails", ""], {}
    for model, row in rows.items():
        if "skipped" in row:
            skipped.setdefault(f"{row['family']}: {row['skipped']}", []).append(model)
            continue
        found = _model_failures(model, row)
        if found:
            lines += [f"- **{model}**"] + [f"  - {f}" for f in found]
    lines += [f"- skipped ({reason}): {', '.join(models)}" for reason, models in skipped.items()]
    return lines + [""]


def _pruned(rows: dict[str, dict]) -> list[str]:
    lines = ["## Pruned models (every usable group at 0.5, or the strategy's fixed ratio)", "",
             "| model | strategy | groups | runs | MACs left | params left | nonzero left | "
             "ONNX max diff of max output |", "|---|---|---|---|---|---|---|---|"]
    for model, row in rows.items():
        for name, entry in row.get("strategies", {}).items():
            pruned = entry.get("pruned")
            if pruned is None:
                continue
            onnx = pruned.get("onnx", "-")
            lines.append(f"| {model} | {name} | {entry['usable']} | "
                         f"{'yes' if pruned['runs'] else 'no'} | {pruned.get('macs_left', '-')} | "
                         f"{pruned.get('params_left', '-')} | "
                         f"{pruned.get('nonzero_params_left', '-')} | "
                         f"{_onnx(onnx, pruned.get('output_abs_max'), 60)} |")
    return lines + [""]


def markdown(rows: dict[str, dict], command: str, made_at: str) -> str:
    """The report: table, summary, failures, pruned models."""
    names = _strategies()
    head = ["# Model coverage", "", f"`{command}`", "", f"Commit {made_at}; {machine()}. "
            "A cell is usable/eligible groups, then the MACs left with all usable groups "
            "pruned (`x`: the pruned model fails; `-`: no group of the strategy's kinds; "
            "`stopped`: the timeout came while pruning). ONNX diffs are the largest "
            "|ONNX Runtime - PyTorch| of the model's output, of its largest |output|.", ""]
    body = _table(rows, names) + [""] + _summary(rows, names) + _failures(rows) + _pruned(rows)
    return "\n".join(head + body) + "\n"
