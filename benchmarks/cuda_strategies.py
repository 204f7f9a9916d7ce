"""Every strategy on every zoo model, measured on a CUDA GPU: do pruned models run, and are they
faster there? Needs only torch and torch-pruning (no Ray, MLflow or Hydra), so it runs on a bare
GPU machine with the repository on PYTHONPATH.

For each model and each strategy that can act on it, every usable group is pruned at ratio 0.5
(N:M and layer removal at their fixed ratio) and timed with autoprune's measurement (warm-up,
blocked runs, median, robust CV) in fp16 at batch 1 and batch 64, next to the unpruned model
timed the same way in the same process (twice, the faster kept). Untrained weights: latency
does not depend on them.
Writes benchmarks/results/cuda_strategies.{json,md} (or to --out).

    python benchmarks/cuda_strategies.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from autoprune.config import HardwareProfile, MeasureConfig, ModelConfig
from autoprune.hardware.measure import measure_latency
from autoprune.models import build_model
from autoprune.pruning import STRATEGIES, Decision, Policy, apply_policy, check_groups, find_groups

MODELS = {
    "resnet": ("autoprune.models.resnet.ResNet", {}),
    "mobilenet": ("autoprune.models.mobilenet.MobileNetV2", {}),
    "vgg": ("autoprune.models.vgg.VGG", {}),
    "mlp": ("autoprune.models.mlp.MLP", {"resolution": 16}),
    "vit": ("autoprune.models.vit.ViT", {"resolution": 16}),
    "hybrid": ("tests.fixtures.hybrid.HybridNet", {}),
}


def profile(batch: int) -> HardwareProfile:
    return HardwareProfile(
        name="cuda-check", description=torch.cuda.get_device_name(0), mode="measure",
        ray_resource=None, device="cuda", backend="torch", precision="fp16", batch_size=batch,
        threads=1, alignment=8,
        measure=MeasureConfig(warmup=20, warmup_s=1.0, repeats=15, number=20),
        roofline=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    rows = []
    x = torch.zeros(1, 1, 16, 16)
    for name, (target, kwargs) in MODELS.items():
        torch.manual_seed(0)
        base = build_model(ModelConfig(name, target, None, {"num_classes": 10,
                                                            "in_channels": 1, **kwargs})).eval()
        groups = find_groups(base, x)
        allowed, _ = check_groups(base, groups, list(STRATEGIES), x)
        # Timed twice, keeping the faster, as a search times its base model: the first
        # measurement on an idle GPU runs while its clocks are still ramping up.
        base_ms = {b: min((measure_latency(base, x, profile(b)) for _ in range(2)),
                          key=lambda lat: lat.median_ms) for b in (1, 64)}
        for strategy, spec in STRATEGIES.items():
            ids = [g for g, names in allowed.items() if strategy in names]
            if not ids:
                continue
            ratio = spec.fixed_ratio if spec.fixed_ratio is not None else 0.5
            policy = Policy({g: Decision(strategy, ratio) for g in ids})
            pruned = apply_policy(base, policy, groups, x).model
            with torch.no_grad():
                out = pruned.cuda().half()(torch.randn(4, 1, 16, 16, device="cuda").half())
            assert out.shape == (4, 10) and torch.isfinite(out).all(), (name, strategy)
            row = {"model": name, "strategy": strategy, "groups": len(ids)}
            for batch in (1, 64):
                lat = measure_latency(pruned.cpu(), x, profile(batch))
                row[f"b{batch}_ms"] = lat.median_ms
                row[f"b{batch}_cv"] = lat.cv
                row[f"b{batch}_speedup"] = base_ms[batch].median_ms / lat.median_ms
                row[f"b{batch}_base_ms"] = base_ms[batch].median_ms
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.cuda.get_device_name(0)
    command = "python benchmarks/cuda_strategies.py"
    (args.out / "cuda_strategies.json").write_text(json.dumps(
        {"command": command, "device": device, "torch": torch.__version__,
         "machine": platform.platform(), "rows": rows}, indent=2) + "\n")
    lines = [f"# Strategies on {device} (fp16, torch {torch.__version__})\n", f"`{command}`\n",
             "Speedup = unpruned median / pruned median, both measured in the same process; "
             "cv = robust coefficient of variation of the timed blocks.\n",
             "| model | strategy | groups | batch 1: ms (cv) | speedup | batch 64: ms (cv) | "
             "speedup |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['strategy']} | {r['groups']} | {r['b1_ms']:.3f} "
                     f"({100 * r['b1_cv']:.1f}%) | {r['b1_speedup']:.2f}x | {r['b64_ms']:.3f} "
                     f"({100 * r['b64_cv']:.1f}%) | {r['b64_speedup']:.2f}x |")
    (args.out / "cuda_strategies.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
