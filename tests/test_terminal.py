"""What a study prints while it runs and at the end."""

from __future__ import annotations

import io

from autoprune.search.records import TrialRecord
from autoprune.terminal import Progress, front_table

METRICS = {"accuracy": 0.98, "latency_ms": 1.0, "latency_p90_ms": 1.1, "latency_cv": 0.02,
           "speedup": 1.5, "params": 1234.0, "macs": 1.0, "size_mb": 0.1, "sparsity": 0.3}


def test_progress_counts_done_failed_and_front():
    out = io.StringIO()
    progress = Progress(3, stream=out)
    progress.update(TrialRecord(0, {}, "complete", dict(METRICS), "measured", "channel 2/2"))
    progress.update(TrialRecord(1, {}, "failed", error="TrialFailed: diverged"))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[  1/3]") and "front 1" in lines[0] and "±2%" in lines[0]
    assert "failed 1" in lines[1] and "FAILED: TrialFailed: diverged" in lines[1]


def test_front_table_lists_base_then_front():
    table = front_table([TrialRecord(7, {}, "complete", dict(METRICS), "measured", "p")],
                        {7: 0.97}, (0.99, 1.5, 0.985))
    lines = table.splitlines()
    assert "base" in lines[2] and "98.50%" in lines[2]
    assert lines[3].split()[0] == "7" and "97.00%" in lines[3] and "1.50x" in lines[3]
