"""`python -m autoprune latency`: one model's latency on a profile, measured and/or predicted;
the model as configured, or pruned by a policy file (`policy=<policy.yaml>`); as text or as one
JSON object (`format=json`)."""

from __future__ import annotations

import json
from typing import Any

from autoprune.config import Settings
from autoprune.errors import UserError

SUMMARY = "measure and/or predict a model's latency on a hardware profile"
FORMATS = ("text", "json")


def describe(entry: dict[str, Any], blocks: str = "") -> str:
    """One line: median with its spread (or the prediction's error), p90, where."""
    if entry["source"] == "predicted":
        error = entry.get("relative_error")
        off = f", off by {100 * error:.1f}% on its calibration" if error is not None else ""
        spread = entry.get("uncertainty") or 0.0
        sure = f" +/- {100 * spread:.1f}% (uncertainty)" if spread > 0 else ""
        return f"predicted {entry['median_ms']:.4f} ms{sure} ({entry['device']}{off})"
    return (f"measured  {entry['median_ms']:.4f} ms +/- {100 * entry['cv']:.1f}% (robust CV"
            f"{blocks}), p90 {entry['p90_ms']:.4f} ms ({entry['device']})")


def text(out: dict[str, Any]) -> list[str]:
    """The lines `latency` prints without format=json."""
    pruned = f", pruned: {out['policy_summary']}" if out["policy"] else ""
    lines = [f"{out['model']}: {out['params']:,} parameters, {out['macs'] / 1e6:.2f} M MACs per "
             f"example, input {out['input']}, batch {out['batch_size']}, {out['precision']}"
             f"{pruned}"]
    m = out["measured"]
    if m is not None:
        lines.append(describe(m, f" of {m['repeats']} blocks of {m['number']} runs, "
                                 f"{m['threads']} thread(s)"))
    else:
        lines.append(f"measured  -  ({out['not_measured']})")
    if out["predicted"] is not None:
        lines.append(f"{describe(out['predicted'])}; {out['predicted']['calibration']}")
    return lines


def check(settings: Settings) -> None:
    """Refuse a format that is not one, and a policy file that is missing or not a policy."""
    from autoprune.model_latency import read_policy

    form = str(settings.raw.get("format", "text"))
    if form not in FORMATS:
        raise UserError(f"format={form} is not a format; choose one of: {', '.join(FORMATS)}")
    if settings.raw.get("policy"):
        read_policy(str(settings.raw["policy"]))


def run(settings: Settings, output_dir: str) -> None:
    """Print the model's size and its latency on `settings.hardware`."""
    from autoprune.model_latency import model_latency

    check(settings)
    policy = settings.raw.get("policy")
    out = model_latency(settings, str(policy) if policy else None)
    if settings.raw.get("format") == "json":
        print(json.dumps(out), flush=True)
    else:
        print("\n".join(text(out)), flush=True)
