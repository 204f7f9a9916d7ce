"""benchmarks/search_methods.py: the hypervolume against a strict floor, and the pooled row
(every method's trials of a seed together) that bounds what any one method can show."""

from __future__ import annotations

import pytest

from tests.benchmarks import load


def _module():
    return load("search_methods")


def _run(bench, method: str, seed: int, trials: list[list[float]], **figures) -> dict:
    run = {"workload": "resnet", "method": method, "seed": seed, "reference": 1.0,
           "base_latency_ms": 10.0, "trials": trials, "steps_used": 10, "steps_full": 20,
           "wall_s": 100.0}
    bench.score(run, 10.0)
    return {**run, **figures}


def test_hypervolume_counts_only_points_faster_than_base_and_above_the_floor():
    bench = _module()
    assert bench.hypervolume([(0.5, 0.99)], 0.97) == pytest.approx(0.5 * 0.02)
    # a second point that is slower and worse adds nothing; one below the floor neither
    assert bench.hypervolume([(0.5, 0.99), (0.8, 0.98), (0.2, 0.96)], 0.97) == \
        pytest.approx(0.5 * 0.02)
    # a faster point of lower quality adds its own strip
    assert bench.hypervolume([(0.5, 0.99), (0.25, 0.98)], 0.97) == \
        pytest.approx(0.25 * 0.01 + 0.5 * 0.02)
    assert bench.hypervolume([(1.2, 1.0)], 0.97) == 0.0


def test_the_pooled_row_is_every_methods_trials_of_a_seed_scored_as_one_study():
    bench = _module()
    runs = [_run(bench, "uniform", 0, [[0.99, 5.0]]),
            _run(bench, "refine", 0, [[0.98, 2.5], [0.995, 8.0]]),
            _run(bench, "uniform", 1, [[0.985, 4.0]]),
            _run(bench, "refine", 1, [[0.96, 1.0]])]
    rows = bench.pooled(runs, "resnet")
    assert len(rows) == 2  # one per seed
    union = bench.hypervolume([(0.5, 0.99), (0.25, 0.98), (0.8, 0.995)], 0.97)
    assert rows[0]["hv_0.97"] == pytest.approx(union)
    for seed, row in enumerate(rows):  # never below any one method of its seed
        assert all(row["hv_0.97"] >= r["hv_0.97"] - 1e-12 for r in runs if r["seed"] == seed)
    # the best speedup within half a point of the seed's studies (0.99 at 5 ms is a point
    # under), and the summed cost
    assert rows[0]["speedup_within_0.005"] == pytest.approx(10.0 / 8.0)
    assert rows[0]["steps_used"] == 20 and rows[0]["wall_s"] == 200.0
    assert rows[1]["speedup_within_0.005"] is None  # no study of seed 1 got within 0.5 pt


def test_the_table_adds_the_pooled_row_only_when_there_is_more_than_one_method():
    bench = _module()
    runs = [_run(bench, m, s, [[0.99, 5.0]]) for m in ("uniform", "refine") for s in (0, 1)]
    assert any(line.startswith(f"| {bench.POOLED} |")
               for line in bench.table(runs, "resnet", ["uniform", "refine"]))
    assert not any(bench.POOLED in line for line in bench.table(runs, "resnet", ["uniform"]))
