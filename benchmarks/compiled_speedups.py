"""Eager against compiled: does a pruned model gain as much where it runs compiled, as a
deployment runs it, as in PyTorch eager?

For each model, the unpruned model and a pruned one (ratio 0.5 on every group: channels of
convolutions, neurons of linear layers, heads of attention) are timed with autoprune's
measurement (`hardware.backend=torch`, `compile`, and on CUDA `cudagraphs`) at batch 1 and
64, in `--rounds` rounds; in each round the two are timed back to back, in alternating order,
and the round's speedup is the unpruned median over the pruned one. Reported: each backend's
speedup, median [min, max] over the rounds, and the pruned model's latency. Untrained weights:
latency does not depend on them.

Needs only torch and torch-pruning (no Ray, MLflow or Hydra), so it runs on a bare GPU machine
with the repository on PYTHONPATH. On CUDA it times in fp16 and adds torchvision's ResNet-18,
MobileNetV3-Large, EfficientNet-B0 and ConvNeXt-Tiny (224 x 224) where torchvision imports.

    python benchmarks/compiled_speedups.py --device cpu --rounds 3
    python benchmarks/compiled_speedups.py --device cuda --rounds 3
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autoprune.config import HardwareProfile, MeasureConfig, ModelConfig
from autoprune.hardware.measure import measure_latency
from autoprune.models import build_model
from autoprune.pruning import Decision, Policy, apply_policy, check_groups, find_groups

ZOO = {
    "resnet": ("autoprune.models.resnet.ResNet", {}),
    "mobilenet": ("autoprune.models.mobilenet.MobileNetV2", {}),
    "vgg": ("autoprune.models.vgg.VGG", {}),
    "vit": ("autoprune.models.vit.ViT", {"resolution": 16}),
}
TORCHVISION = ("resnet18", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny")
ROOT = Path(__file__).resolve().parents[1]
STRUCTURED = ("channel", "neuron", "head")


def profile(device: str, backend: str, batch: int) -> HardwareProfile:
    return HardwareProfile(
        name=f"{device}-{backend}", description=device, mode="measure", ray_resource=None,
        device=device, backend=backend, precision="fp16" if device == "cuda" else "fp32",
        batch_size=batch, threads=1, alignment=8,
        measure=MeasureConfig(warmup=20, warmup_s=1.0 if device == "cuda" else 0.2,
                              repeats=15, number=20),
        roofline=None)


def models(device: str) -> list[tuple[str, nn.Module, torch.Tensor]]:
    """(name, unpruned model, one example's input) for each model this device times."""
    found = []
    for name, (target, kwargs) in ZOO.items():
        torch.manual_seed(0)
        model = build_model(ModelConfig(name, target, None, {"num_classes": 10,
                                                             "in_channels": 1, **kwargs}))
        found.append((name, model.eval(), torch.zeros(1, 1, 16, 16)))
    if device == "cuda":
        try:
            import torchvision
        except ImportError:
            return found
        for name in TORCHVISION:
            torch.manual_seed(0)
            found.append((name, torchvision.models.get_model(name, weights=None).eval(),
                          torch.zeros(1, 3, 224, 224)))
    return found


def half_pruned(model: nn.Module, x: torch.Tensor) -> tuple[nn.Module, int]:
    """`model` with ratio 0.5 on every group: channels of convolutions, neurons of linear
    layers and heads of attention (the first of these a group allows)."""
    groups = find_groups(model, x)
    allowed, _ = check_groups(model, groups, list(STRUCTURED), x)
    decisions = {g: Decision(next(s for s in STRUCTURED if s in names), 0.5)
                 for g, names in allowed.items() if any(s in names for s in STRUCTURED)}
    return apply_policy(model, Policy(decisions), groups, x).model, len(decisions)


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def time_pair(base: nn.Module, pruned: nn.Module, x: torch.Tensor, hw: HardwareProfile,
              rounds: int) -> dict[str, Any]:
    speedups, pruned_ms = [], []
    for r in range(rounds):
        order = [base, pruned] if r % 2 == 0 else [pruned, base]
        times = {id(m): measure_latency(m, x, hw).median_ms for m in order}
        speedups.append(times[id(base)] / times[id(pruned)])
        pruned_ms.append(times[id(pruned)])
    return {"speedup": spread(speedups), "pruned_ms": spread(pruned_ms)}


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True,
                              text=True).stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                ":(exclude)benchmarks/results")
    return git("rev-parse", "HEAD") + ("+dirty" if dirty else "")


def report(data: dict[str, Any]) -> str:
    backends = data["backends"]
    lines = [f"# Eager against compiled: speedups of pruned models on {data['device']}\n",
             f"`{data['command']}` at commit {data['commit']}, torch {data['torch']}, "
             f"{data['machine']}; {data['rounds']} rounds.\n",
             "Speedup = unpruned median / pruned median, timed back to back in each round "
             "(alternating order): median [min, max] over the rounds. Pruned: ratio "
             "0.5 on every group (channels, neurons, heads).\n",
             "| model | batch | " + " | ".join(f"{b} speedup | {b} pruned ms" for b in backends)
             + " |", "|---|---|" + "---|---|" * len(backends)]
    for row in data["rows"]:
        cells = []
        for b in backends:
            s, ms = row[b]["speedup"], row[b]["pruned_ms"]
            cells.append(f"{s['median']:.2f}x [{s['min']:.2f}, {s['max']:.2f}] | "
                         f"{ms['median']:.3f}")
        lines.append(f"| {row['model']} | {row['batch']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    backends = ["torch", "compile"] + (["cudagraphs"] if args.device == "cuda" else [])
    rows, start = [], time.monotonic()
    for name, base, x in models(args.device):
        pruned, groups = half_pruned(base, x)
        for batch in (1, 64):
            row: dict[str, Any] = {"model": name, "batch": batch, "groups": groups}
            for backend in backends:
                row[backend] = time_pair(base, pruned, x, profile(args.device, backend, batch),
                                         args.rounds)
            rows.append(row)
            print(f"[{time.monotonic() - start:6.0f}s] {json.dumps(row)}", flush=True)
    device = torch.cuda.get_device_name(0) if args.device == "cuda" else \
        f"{platform.processor() or platform.machine()} CPU, 1 thread"
    data = {"command": f"python benchmarks/compiled_speedups.py --device {args.device} "
                       f"--rounds {args.rounds}",
            "commit": commit(), "device": device, "torch": torch.__version__,
            "machine": platform.platform(), "rounds": args.rounds, "backends": backends,
            "rows": rows}
    stem = f"compiled_speedups_{args.device}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(data, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(report(data))


if __name__ == "__main__":
    main()
