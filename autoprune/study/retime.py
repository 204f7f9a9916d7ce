"""Timing again at the end: the base model and the front, in the quiet the trials leave.

Within a study each trial is timed twice and the faster time kept, but while other trials
run: the driver learns, logs and proposes between measurements, and on a machine with few
cores that slows a measurement a little. The base model, timed at the start, meets Ray's
start-up instead. So once the trials are done, the base model and every front model are timed
once more through the same bench, the faster time kept for each (interference only adds
time), and every speedup is divided anew: the front's speedups are measured under the same
conditions as the base's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from torch import nn

from autoprune.hardware.bench import BenchUnavailable
from autoprune.pruning import Policy
from autoprune.search.pareto import front_records
from autoprune.search.records import TrialRecord
from autoprune.search.reference import Reference

TIMING = ("latency_ms", "latency_p90_ms", "latency_cv")


def retime_base(backend: Any, model: nn.Module, base: Reference, tracker: Any,
                say: Callable[[str], None]) -> Reference:
    """The base model timed once more; the reference with the faster time."""
    again = backend.latency(model, refresh=True)
    if again.source != "measured" or again.median_ms >= base.latency_ms:
        return base
    say(f"base model timed again after the trials: {again.median_ms:.3f} ms (first "
        f"{base.latency_ms:.3f} ms)")
    tracker.log_metrics({"base_latency_ms": again.median_ms,
                         "base_latency_p90_ms": again.p90_ms, "base_latency_cv": again.cv})
    return dataclasses.replace(base, latency_ms=again.median_ms)


def retime(backend: Any, base_model: nn.Module, base: Reference, records: list[TrialRecord],
           rebuild: Callable[[TrialRecord], nn.Module], int8_inputs: Any, tracker: Any,
           say: Callable[[str], None]) -> tuple[Reference, dict[int, nn.Module]]:
    """Time the base model and the front again (the faster kept for each), divide every
    completed trial's speedup anew; return the reference and the front's rebuilt models
    (by trial number) for the end of the study to score and export. A bench that no longer
    answers leaves the search's times as they are."""
    try:
        return _retime(backend, base_model, base, records, rebuild, int8_inputs, tracker, say)
    except BenchUnavailable as exc:
        say(f"the latency device did not answer when timing the front again ({exc}); the "
            "search's times stand")
        return base, {}


def _retime(backend: Any, base_model: nn.Module, base: Reference, records: list[TrialRecord],
            rebuild: Callable[[TrialRecord], nn.Module], int8_inputs: Any, tracker: Any,
            say: Callable[[str], None]) -> tuple[Reference, dict[int, nn.Module]]:
    base = retime_base(backend, base_model, base, tracker, say)
    models: dict[int, nn.Module] = {}
    faster, late = 0, set()
    # A front model the search only predicted (adaptive measurement) is measured now, and its
    # time replaces the prediction whatever it is; the front may change, so until every
    # member of the front is measured.
    while todo := [r for r in front_records(records, base.objective)
                   if r.number not in models]:
        for record in todo:
            was = _time_again(backend, record, rebuild(record), int8_inputs, models)
            faster += was == "faster"
            if was == "predicted":
                late.add(record.number)
    for record in records:
        if record.state == "complete" and record.metrics.get("latency_ms"):
            record.metrics["speedup"] = base.latency_ms / record.metrics["latency_ms"]
            if record.run_id:
                tracker.log_metrics({k: record.metrics[k] for k in (*TIMING, "speedup")
                                     if k in record.metrics}, record.run_id,
                                    step=record.final_step())
                if record.number in late:
                    tracker.tag_trial(record, "latency_source", record.latency_source)
    if models:
        say(f"front timed again: {faster} of {len(models)} models faster than in the search"
            + (f"; {len(late)} the search had only predicted, measured now" if late else ""))
    if late:
        tracker.log_metrics({"latency_measured_at_front": float(len(late))})
    return base, models


def _time_again(backend: Any, record: TrialRecord, model: nn.Module, int8_inputs: Any,
                models: dict[int, nn.Module]) -> str:
    """Time a front model again; keep the faster time, or the measurement of a predicted
    one. Returns "faster", "predicted" (now measured) or "" (kept)."""
    models[record.number] = model
    int8 = int8_inputs if Policy.from_params(record.params).quantize == "int8" else None
    again = backend.latency(model, refresh=True, int8_calibration=int8)
    predicted = record.latency_source == "predicted"
    if again.source != "measured" or not (predicted
                                          or again.median_ms < record.metrics["latency_ms"]):
        return ""
    record.metrics.update(zip(TIMING, (again.median_ms, again.p90_ms, again.cv), strict=True))
    if not predicted:
        return "faster"
    record.metrics.pop("latency_uncertainty", None)
    record.latency_source = "measured"
    return "predicted"
