"""Dynamic channel gating against static channel pruning at equal MACs, batch size 1, CPU.

On the built-in ResNet (digits, 16x16) every group that can be gated (the channels inside each
residual block) is pruned at the same ratio, once with `channel` (filters removed) and once with
`dynamic` (the same number of channels kept per input, chosen by the gate). Both run the same
convolution work, so their MACs differ only by the gates. Each model is fine-tuned as a search
trial is (the study's fine-tuning settings, BatchNorm recalibration first), with `--seeds`
fine-tuning seeds, and scored on the held-out test split. `--stages` repeats the comparison
with only one stage's blocks pruned, at ratio 0.5: where in the network gating pays.

Latency is measured here, in this process, as `hardware=cpu` measures (PyTorch eager, one
thread, batch size 1): every model once per round, `--rounds` rounds, in a shuffled order per
round so that drift on this shared machine hits all models alike. Reported: the median over
rounds and, for dynamic against static at the same ratio, the median and range over rounds of
their latency ratio (the gates' overhead is that ratio minus one, at equal convolution work).
"Inputs off the usual channels" is the share of test inputs for which a gated layer kept a
different set of channels than its most common set, averaged over gated layers: how dynamic
the trained gates are. Writes benchmarks/results/dynamic_gating.{json,md,png}.

    python benchmarks/dynamic_gating.py --seeds 3 --rounds 7
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import random
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

from autoprune import specs
from autoprune.cli import compose
from autoprune.config import settings_from_dict
from autoprune.hardware.measure import measure_latency
from autoprune.models.base import prepare_base_model
from autoprune.pruning import (
    Decision,
    Policy,
    check_groups,
    find_groups,
    model_stats,
)
from autoprune.pruning.strategies.gated_layers import GatedConv2d
from autoprune.search.objective import TrialSettings, prune_and_finetune
from autoprune.training import evaluate

RESULTS = Path(__file__).parent / "results"


def off_usual(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Share of inputs whose kept channels differ from the layer's most common set."""
    shares = []
    for layer in (m for m in model.modules() if isinstance(m, GatedConv2d)):
        chosen: list[tuple[int, ...]] = []
        hook = layer.register_forward_hook(
            lambda m, _a, _o, chosen=chosen: chosen.append(tuple(sorted(m.index[0].tolist()))))
        with torch.no_grad():
            for i in range(len(x)):
                model(x[i:i + 1])
        hook.remove()
        shares.append(1 - Counter(chosen).most_common(1)[0][1] / len(chosen))
    return statistics.mean(shares)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-stages", dest="stages", action="store_false")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for `search`")
    args = parser.parse_args()

    started = time.monotonic()
    settings = settings_from_dict(compose("search", ["hardware=cpu", *args.overrides]))
    profile = settings.hardware
    data = specs.workload(settings)
    x = data.example()
    with tempfile.TemporaryDirectory() as cache:
        base = prepare_base_model(settings.model, settings.data,
                                  specs.train_spec(settings, base=True), data, cache).model
    prune = specs.prune_settings(settings)
    groups = find_groups(base, x)
    usable, _ = check_groups(base, groups, ["dynamic"], x, prune)
    gated = [g.id for g in groups if g.id in usable]
    f = settings.finetune
    spec = specs.train_spec(settings)
    test_x = torch.cat([data.task.inputs(b) for b in data.eval_loader("test", False)])

    cases = [("all", ratio, gated) for ratio in args.ratios]
    if args.stages:
        for stage in sorted({gid.split(".")[0] for gid in gated}):
            cases.append((stage, 0.5, [gid for gid in gated if gid.startswith(stage + ".")]))
    models: dict[str, torch.nn.Module] = {"base": base}
    rows = []
    for scope, ratio, ids in cases:
        for strategy in ("channel", "dynamic"):
            policy = Policy({gid: Decision(strategy, ratio) for gid in ids})
            accuracies, dynamic = [], []
            for seed in range(args.seeds):
                trial = TrialSettings(prune, dataclasses.replace(spec, seed=seed),
                                      f.bn_recalibration_batches, 1.0)
                model = prune_and_finetune(policy, base, groups, data, trial).cpu().eval()
                accuracies.append(evaluate(model, data, "test", False)["accuracy"])
                model.cpu()
                if strategy == "dynamic":
                    dynamic.append(off_usual(model, test_x))
                models[f"{scope}/{ratio}/{strategy}/{seed}"] = model
            stats = model_stats(model, x)
            rows.append({"scope": scope, "ratio": ratio, "strategy": strategy,
                         "groups": len(ids), "macs_m": stats["macs"] / 1e6,
                         "params": stats["params"], "test_accuracy": accuracies,
                         "off_usual": dynamic})
            print(f"{scope} {ratio} {strategy}: accuracy {statistics.mean(accuracies):.4f}",
                  flush=True)

    print(f"measuring {len(models)} models x {args.rounds} rounds", flush=True)
    timings: dict[str, list[float]] = {name: [] for name in models}
    order = list(models)
    shuffle = random.Random(0)
    for _ in range(args.rounds):
        shuffle.shuffle(order)
        for name in order:
            timings[name].append(measure_latency(models[name], x,
                                                 profile).median_ms)
    base_ms = statistics.median(timings["base"])
    for row in rows:
        key = f"{row['scope']}/{row['ratio']}/{row['strategy']}"
        per_round = [statistics.median(timings[f"{key}/{s}"][r] for s in range(args.seeds))
                     for r in range(args.rounds)]
        row["latency_ms_rounds"] = per_round
        row["latency_ms"] = statistics.median(per_round)
        row["speedup"] = base_ms / row["latency_ms"]
    for row in rows:
        if row["strategy"] != "dynamic":
            continue
        static = next(r for r in rows if r["strategy"] == "channel"
                      and (r["scope"], r["ratio"]) == (row["scope"], row["ratio"]))
        ratios = [d / s for d, s in zip(row["latency_ms_rounds"], static["latency_ms_rounds"],
                                        strict=True)]
        row["vs_static"] = [statistics.median(ratios), min(ratios), max(ratios)]
        row["gate_macs_m"] = row["macs_m"] - static["macs_m"]

    result = {
        "command": "python benchmarks/dynamic_gating.py " + " ".join(
            [f"--seeds {args.seeds}", f"--rounds {args.rounds}"]
            + ([] if args.stages else ["--no-stages"]) + args.overrides),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads available, "
                   f"torch {torch.__version__}",
        "profile": f"{profile.name}: {profile.backend}, {profile.threads} thread(s), "
                   f"batch {profile.batch_size}",
        "finetune_steps": spec.steps, "base_latency_ms": base_ms,
        "base_test_accuracy": evaluate(base, data.x_test, data.y_test),
        "base_macs_m": model_stats(base, x)["macs"] / 1e6,
        "gated_groups": gated, "rows": rows,
        "wall_s": round(time.monotonic() - started, 1),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dynamic_gating.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "dynamic_gating.md").write_text(markdown(result))
    plot(result, RESULTS / "dynamic_gating.png")
    print(markdown(result))


def _spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} [{min(values):.3f}, {max(values):.3f}]"


def markdown(result: dict) -> str:
    lines = [
        "# Dynamic gating against static channel pruning (equal MACs, batch size 1)", "",
        f"`{result['command']}`", "",
        f"{result['machine']}; latency profile {result['profile']}; "
        f"{result['finetune_steps']} fine-tuning steps per model; wall {result['wall_s']} s.",
        f"Unpruned: {result['base_macs_m']:.2f} M MACs, test accuracy "
        f"{result['base_test_accuracy']:.3f}, {result['base_latency_ms']:.3f} ms.", "",
        "Accuracy: mean [min, max] over fine-tuning seeds. Latency: median over rounds of the "
        "per-round median over seeds. Dynamic / static: median [min, max] over rounds of the "
        "latency ratio at the same ratio; above 1 the gates cost more than they save.", "",
        "| pruned | ratio | strategy | MACs (M) | gate MACs (M) | test accuracy | latency ms "
        "| speedup | dynamic / static latency | inputs off the usual channels |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        scope = "every block" if row["scope"] == "all" else f"{row['scope']} only"
        dynamic = row["strategy"] == "dynamic"
        versus = "[{1:.2f}, {2:.2f}]".format(*row["vs_static"]) if dynamic else ""
        lines.append(
            f"| {scope} | {row['ratio']:.2f} | {row['strategy']} | {row['macs_m']:.2f} | "
            + (f"{row['gate_macs_m']:.3f}" if dynamic else "") + " | "
            f"{_spread(row['test_accuracy'])} | {row['latency_ms']:.3f} | "
            f"{row['speedup']:.2f}x | "
            + (f"{row['vs_static'][0]:.2f} {versus}" if dynamic else "") + " | "
            + (f"{100 * statistics.mean(row['off_usual']):.0f}%" if dynamic else "") + " |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for strategy, marker in (("channel", "o"), ("dynamic", "s")):
        rows = [r for r in result["rows"] if r["strategy"] == strategy and r["scope"] == "all"]
        ax.plot([r["latency_ms"] for r in rows],
                [statistics.mean(r["test_accuracy"]) for r in rows], marker=marker,
                label=f"{strategy} (every block)")
        for r in rows:
            ax.annotate(f"{r['ratio']:.2f}", (r["latency_ms"], statistics.mean(r["test_accuracy"])),
                        textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.scatter([result["base_latency_ms"]], [result["base_test_accuracy"]], color="black",
               marker="*", s=90, label="unpruned", zorder=3)
    ax.set_xlabel("measured latency, batch 1 (ms)")
    ax.set_ylabel("test accuracy (mean over seeds)")
    ax.set_title("Dynamic gating vs static channel pruning (labels: ratio)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
