"""How a latency is timed, whatever runs the model: warm-up, timed blocks, median and spread.

Pure Python (no torch): the slim device bench (`autoprune.hardware.device_bench`) times
exported models with it on a node that has neither PyTorch nor the rest of autoprune.
`measure` is a mapping (or object) with the fields of `hardware.measure`: warmup, warmup_s,
repeats, number, max_cv, retries.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def robust_cv(samples: Sequence[float]) -> float:
    """1.4826 x median absolute deviation / median: the spread that one outlier cannot move."""
    median = statistics.median(samples)
    mad = statistics.median(abs(s - median) for s in samples)
    return 1.4826 * mad / median if median > 0 else float("inf")


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summary(blocks: Sequence[float]) -> dict[str, float]:
    """A measurement's figures: the median block, its 0.9 quantile and robust CV (ms)."""
    return {"median_ms": statistics.median(blocks), "p90_ms": percentile(blocks, 0.9),
            "cv": robust_cv(blocks)}


def setting(measure: Any, name: str) -> Any:
    return measure[name] if isinstance(measure, Mapping) else getattr(measure, name)


def quietest(attempt: Callable[[], list[float]], retries: int, max_cv: float) -> list[float]:
    """The timed blocks of `attempt()`, run again (at most `retries` times) while the fastest
    attempt so far spreads wider than `max_cv`: interference from other processes only
    ever slows a run down, so among noisy attempts the fastest is kept."""
    best = attempt()
    for _retry in range(retries):
        if robust_cv(best) <= max_cv:
            break
        blocks = attempt()
        if statistics.median(blocks) < statistics.median(best):
            best = blocks
    return best


def time_blocks(run: Callable[[], object], sync: Callable[[], object],
                measure: Any) -> list[float]:
    """Per-pass milliseconds of `repeats` blocks of `number` calls of `run`, after warming up
    for `warmup` passes and at least `warmup_s` seconds (caches, allocator and lazy kernel
    selection settle within passes, clock frequencies within time); the quietest attempt."""
    warmup, warmup_s = setting(measure, "warmup"), setting(measure, "warmup_s")
    repeats, number = setting(measure, "repeats"), setting(measure, "number")
    start = time.perf_counter()
    done = 0
    while done < warmup or time.perf_counter() - start < warmup_s:
        run()
        sync()
        done += 1

    def attempt() -> list[float]:
        blocks = []
        for _ in range(repeats):
            sync()
            begin = time.perf_counter()
            for _ in range(number):
                run()
            sync()
            blocks.append((time.perf_counter() - begin) * 1e3 / number)
        return blocks

    return quietest(attempt, setting(measure, "retries"), setting(measure, "max_cv"))


def keep_faster(cache: dict[str, Any], key: str, result: Any,
                median: Callable[[Any], float] = lambda r: r.median_ms) -> Any:
    """Store `result` under `key`, or the earlier measurement of the same architecture if
    that was faster (interference only adds time); return what is stored."""
    if key in cache:
        result = min(result, cache[key], key=median)
    cache[key] = result
    return result
