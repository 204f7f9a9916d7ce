"""benchmarks/compiled_speedups.py: the pruned model it times is narrower and computes a
result of the model's shape; the report gives every backend's speedup with its spread."""

from __future__ import annotations

import torch

from tests.benchmarks import load


def _module():
    return load("compiled_speedups")


def test_the_pruned_models_are_narrower_and_keep_their_outputs():
    bench = _module()
    for name, base, x in bench.models("cpu"):
        pruned, groups = bench.half_pruned(base, x)
        assert groups >= 1, name
        count = sum(p.numel() for p in pruned.parameters())
        assert count < 0.8 * sum(p.numel() for p in base.parameters()), name
        with torch.no_grad():
            assert pruned(x).shape == base(x).shape, name


def test_the_report_has_each_backends_speedup_with_its_range():
    bench = _module()
    cell = {"speedup": bench.spread([1.5, 1.2, 1.8]), "pruned_ms": bench.spread([0.2, 0.3])}
    data = {"device": "cpu", "command": "python benchmarks/compiled_speedups.py", "commit": "abc",
            "torch": "2", "machine": "m", "rounds": 3, "backends": ["torch", "compile"],
            "rows": [{"model": "resnet", "batch": 64, "groups": 5,
                      "torch": cell, "compile": cell}]}
    text = bench.report(data)
    assert "| model | batch | torch speedup | torch pruned ms | compile speedup |" in text
    assert "| resnet | 64 | 1.50x [1.20, 1.80] | 0.250 | 1.50x [1.20, 1.80] | 0.250 |" in text
    assert "at commit abc" in text
