"""A kernel-level latency model: every distinct kernel a model runs is timed once on the
device, and a model's latency is the sum of its kernels' times, corrected for what the sum
misses.

A model's kernels are its ATen operators as one forward pass dispatches them (a dispatch mode,
so any PyTorch model works), each identified by its operator, argument shapes, dtypes, layout
and scalar arguments. A kernel seen for the first time is timed right there, with the very
arguments the model gave it, and stored in the profile's kernel table (SQLite, shared by
processes). The correction, `a * sum + b * kernels + d * module calls + c`, is fitted by
`calibrate` from whole-model measurements: it covers what timing kernels one at a time does not
see: a kernel repeated runs faster than one among others (on this project's CPU, a model's
kernels replayed in order take 1.1-1.4x the sum of their isolated times), and the Python
between operators (module calls, 1-3 us each in eager PyTorch). A kernel that cannot be timed
(on another machine than the device) is estimated from the nearest timed kernel of the same
operator, scaled by the roofline.
"""

from __future__ import annotations

import math
import sqlite3
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_pre_hook

from autoprune.config import HardwareProfile
from autoprune.hardware.latency import timing_input
from autoprune.hardware.predictor import BYTES, Kernel, KernelRecorder, kernel_time_ms
from autoprune.tasks import call_model

# A pass is replayed at least MIN_REPLAYS times and for about REPLAY_S seconds (at most
# MAX_REPLAYS times) to time its new kernels.
MIN_REPLAYS, MAX_REPLAYS, REPLAY_S = 11, 201, 0.3


@dataclass(frozen=True)
class Timed:
    """One kernel of a forward pass: its key, operator, roofline view and time (None when
    it was not timed on the device)."""

    key: str
    op: str
    kernel: Kernel
    ms: float | None


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        layout = "c" if value.is_contiguous() else ",".join(map(str, value.stride()))
        return f"{tuple(value.shape)}{str(value.dtype).removeprefix('torch.')}/{layout}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_describe(v) for v in value) + "]"
    return repr(value)


def kernel_key(func: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> str:
    """What makes two calls the same kernel: operator, shapes, dtypes, layout, scalars."""
    described = [_describe(a) for a in args]
    described += [f"{k}={_describe(v)}" for k, v in sorted(kwargs.items())]
    return f"{func}({';'.join(described)})"


def replay_times(calls: Sequence[tuple[Any, tuple, dict]],
                 budget_s: float = REPLAY_S) -> list[float]:
    """Milliseconds each of a forward pass's calls takes in context: the pass replayed call
    by call, each call timed alone, the median over replays. Timed in isolation, a kernel
    repeated runs warm (caches, branch predictors) and small kernels come out 2-5x faster
    than among the others. Denormals are flushed: replayed in-place operators compound
    their arguments, which a real pass never does (PyTorch keeps them by default)."""
    cuda = any(isinstance(a, torch.Tensor) and a.is_cuda for _, args, _ in calls for a in args)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    times: list[list[float]] = [[] for _ in calls]
    torch.set_flush_denormal(True)
    try:
        started = time.perf_counter()
        replays = 0
        while replays < MIN_REPLAYS or (time.perf_counter() - started < budget_s
                                        and replays < MAX_REPLAYS):
            for index, (func, args, kwargs) in enumerate(calls):
                sync()
                start = time.perf_counter()
                func(*args, **kwargs)
                sync()
                times[index].append(time.perf_counter() - start)
            replays += 1
    finally:
        torch.set_flush_denormal(False)
    return [statistics.median(t[1:]) * 1e3 for t in times]


class KernelTable:
    """The timed kernels of one profile: a SQLite file (so concurrent processes share it),
    read once and kept in memory."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS kernels (key TEXT PRIMARY KEY, op TEXT, "
                       "kind TEXT, flops REAL, bytes REAL, ms REAL)")
            rows = db.execute("SELECT key, op, kind, flops, bytes, ms FROM kernels").fetchall()
        self.ms = {key: ms for key, _, _, _, _, ms in rows}
        # The roofline's view of each timed kernel, by operator.
        self.by_op: dict[str, list[tuple[Kernel, float]]] = {}
        for _, op, kind, flops, moved, ms in rows:
            self.by_op.setdefault(op, []).append((Kernel(kind, flops, moved), ms))

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60.0)

    def add(self, key: str, op: str, kernel: Kernel, ms: float) -> None:
        """Store a timing; a kernel timed twice keeps its faster time (interference only
        adds time)."""
        with self._connect() as db:
            db.execute("INSERT INTO kernels VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE "
                       "SET ms = min(ms, excluded.ms)",
                       (key, op, kernel.op, kernel.flops, kernel.bytes, ms))
        self.ms[key] = min(ms, self.ms.get(key, ms))
        self.by_op.setdefault(op, []).append((kernel, ms))


class _CallRecorder(KernelRecorder):
    """Records every call of a pass (operator, arguments) with the roofline's view of it."""

    def __init__(self, profile: HardwareProfile) -> None:
        super().__init__(profile.alignment, BYTES[profile.precision])
        self.calls: list[tuple[Any, tuple, dict]] = []
        self.views: list[Kernel] = []
        self.modules = 0

    def count_module(self, module: nn.Module, inputs: Any) -> None:
        self.modules += 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.calls.append((func, args, kwargs))
        self.views.append(self._count(func, args, out) or Kernel(str(func), 0.0, 0.0))
        return out


def time_kernels(model: nn.Module, example: Any, profile: HardwareProfile, table: KernelTable,
                 measure_new: bool) -> tuple[list[Timed], int]:
    """The kernels of one forward pass of `model` at the profile's batch size, with their
    times (from `table`; when `measure_new`, kernels it lacks are timed now, in context, with
    the profile's threads), and how many module calls the pass made."""
    x = timing_input(example, profile.batch_size, random=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(profile.threads)
    try:
        with torch.inference_mode():
            model = model.eval()
            call_model(model, x)  # what a layer prepares once is not part of every pass
            recorder = _CallRecorder(profile)
            hook = register_module_forward_pre_hook(recorder.count_module)
            try:
                with recorder:
                    call_model(model, x)
            finally:
                hook.remove()
            keys = [kernel_key(*call) for call in recorder.calls]
            if measure_new and any(key not in table.ms for key in keys):
                _store_new(table, keys, recorder, replay_times(recorder.calls))
    finally:
        torch.set_num_threads(threads)
    return [Timed(key, str(call[0]), kernel, table.ms.get(key)) for key, call, kernel
            in zip(keys, recorder.calls, recorder.views, strict=True)], recorder.modules


def _store_new(table: KernelTable, keys: Sequence[str], recorder: _CallRecorder,
               times: Sequence[float]) -> None:
    """Store the kernels `table` lacks, each at the median of its calls in the pass."""
    found: dict[str, list[float]] = {}
    for key, ms in zip(keys, times, strict=True):
        if key not in table.ms:
            found.setdefault(key, []).append(ms)
    for key, runs in found.items():
        index = keys.index(key)
        table.add(key, str(recorder.calls[index][0]), recorder.views[index],
                  statistics.median(runs))


def estimate_ms(timed: Timed, table: KernelTable, profile: HardwareProfile) -> float:
    """A kernel's time: as timed, or (never timed here) the nearest timed kernel of the same
    operator scaled by their roofline times, or the roofline alone."""
    if timed.ms is not None:
        return timed.ms
    roof = profile.roofline
    own = kernel_time_ms(timed.kernel, roof, profile.precision) if roof is not None else 0.0
    same = table.by_op.get(timed.op, [])
    if not same:
        return own
    if own <= 0 or roof is None:
        return statistics.median(ms for _, ms in same)

    def distance(entry: tuple[Kernel, float]) -> float:
        return abs(math.log(max(kernel_time_ms(entry[0], roof, profile.precision), 1e-9) / own))

    kernel, ms = min(same, key=distance)
    return ms * own / max(kernel_time_ms(kernel, roof, profile.precision), 1e-9)


@dataclass(frozen=True)
class Summed:
    """A forward pass as the correction sees it: summed kernel time, kernel count, module
    calls, and the share of the time that was estimated rather than timed."""

    sum_ms: float
    kernels: int
    modules: int
    estimated: float

    def features(self) -> tuple[float, float, float, float]:
        return (self.sum_ms, float(self.kernels), float(self.modules), 1.0)


def summed(timed: Sequence[Timed], modules: int, table: KernelTable,
           profile: HardwareProfile) -> Summed:
    times = [estimate_ms(t, table, profile) for t in timed]
    total = sum(times)
    guessed = sum(ms for t, ms in zip(timed, times, strict=True) if t.ms is None)
    return Summed(total, len(timed), modules, guessed / total if total > 0 else 0.0)


@dataclass(frozen=True)
class KernelModel:
    """A profile's kernel-level latency model: its kernel table, the correction's weights
    (of summed time, kernels, module calls and 1), the log-scale spread of its fit, and
    whether new kernels may be timed in this process."""

    table_path: str
    weights: tuple[float, ...]
    spread: float
    device: str
    measure_new: bool = False

    def correct(self, pass_: Summed) -> float:
        ms = sum(w * f for w, f in zip(self.weights, pass_.features(), strict=True))
        return max(ms, 0.1 * pass_.sum_ms)


_TABLES: dict[str, KernelTable] = {}


def table(path: str) -> KernelTable:
    """The kernel table at `path`, opened once per process."""
    if path not in _TABLES:
        _TABLES[path] = KernelTable(Path(path))
    return _TABLES[path]


def forget_tables() -> None:
    """Close every table this process opened (a new calibration replaces them)."""
    _TABLES.clear()


def fit_correction(passes: Sequence[Summed], measured_ms: Sequence[float]
                   ) -> tuple[tuple[float, ...], float]:
    """(weights, spread): the correction's weights by least squares of relative error, and
    the log-scale standard deviation of the error they leave."""
    import numpy as np

    measured = np.asarray(measured_ms, dtype=float)
    rows = np.array([p.features() for p in passes]) / measured[:, None]
    solved, *_ = np.linalg.lstsq(rows, np.ones(len(passes)), rcond=None)
    weights = tuple(float(w) for w in solved)
    model = KernelModel("", weights, 0.0, "")
    logs = [math.log(model.correct(p) / m) for p, m in zip(passes, measured, strict=True)]
    return weights, math.sqrt(sum(v * v for v in logs) / len(logs))


def kernel_prediction(model: nn.Module, example: Any, profile: HardwareProfile,
                      kernels: KernelModel) -> tuple[float, float]:
    """(ms, uncertainty): the kernel model's prediction of `model` on `profile` and its
    log-scale uncertainty (the fit's spread, widened by the share of estimated kernel time)."""
    own = table(kernels.table_path)
    timed, modules = time_kernels(model, example, profile, own, kernels.measure_new)
    pass_ = summed(timed, modules, own, profile)
    return kernels.correct(pass_), math.hypot(kernels.spread, 0.3 * pass_.estimated)
