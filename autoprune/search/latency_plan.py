"""Where a study's latencies come from: a bench actor on the device, or the latency model."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import ray

from autoprune.config import HardwareProfile
from autoprune.errors import StudyFailed, UserError
from autoprune.hardware.bench import Bench, BenchLatency, DeviceBenchLatency
from autoprune.hardware.device_bench import DeviceBench
from autoprune.hardware.device_state import describe
from autoprune.hardware.exported import bench_settings
from autoprune.hardware.gate import CoreGate
from autoprune.hardware.latency import LatencyBackend
from autoprune.hardware.predictor import PredictedLatency


@dataclass
class LatencyPlan:
    """Where a study's latencies come from."""

    source: str  # "measured" or "predicted"
    where: str
    bench: Any = None
    gate: Any = None
    node: str = ""  # Ray node id of the bench, when measured
    learner: Any = None  # the LatencyLearner actor, under hardware.measure_policy=adaptive
    exported: bool = False  # the bench is a slim device bench: it gets exported files
    device_state: dict[str, str] = field(default_factory=dict)  # what that device reported

    def backend(self, profile: HardwareProfile, example: Any,
                trial: str | None = None) -> LatencyBackend:
        """The backend of trial `trial` (adaptive when the plan learns), or of the driver
        (`trial` None: always the bench, or the latency model)."""
        if self.bench is None:
            return PredictedLatency(profile, example)
        bench = DeviceBenchLatency(self.bench, profile, example) if self.exported else \
            BenchLatency(self.bench, profile.measure.timeout_s, profile.measure.attempts)
        if self.learner is None or trial is None:
            return bench
        from autoprune.search.adaptive import AdaptiveLatency

        return AdaptiveLatency(bench, PredictedLatency(profile, example), self.learner, trial)

    def learn(self, model: Any, profile: HardwareProfile, example: Any, measured_ms: float,
              int8_calibration: Any = None) -> None:
        """Give the learner a measurement made outside the trials (the base model's)."""
        if self.learner is not None:
            predicted = PredictedLatency(profile, example).latency(
                model, int8_calibration=int8_calibration).median_ms
            ray.get(self.learner.measured_one.remote("", predicted, measured_ms))

    def learnt(self) -> dict[str, float]:
        """The learner's summary (MLflow metrics), or nothing when the plan does not learn."""
        return ray.get(self.learner.summary.remote()) if self.learner is not None else {}


def plan_latency(profile: HardwareProfile, example: Any) -> LatencyPlan:
    """Create the bench (and core gate) the profile needs, or choose the latency model.

    Measured on this machine, a gate pauses every trial's training here (CPU or GPU) while
    the bench measures, so a measurement never shares its cores or GPU with training."""
    resource = profile.ray_resource
    available = ray.cluster_resources().get(resource, 0) if resource else 0
    if profile.mode == "predict" or (profile.mode == "auto" and available < 1):
        why = f"no Ray node advertises the resource '{resource}'" if resource else "mode=predict"
        return LatencyPlan("predicted", f"latency model of {profile.description} ({why})")
    if resource:
        if available < 1:
            raise UserError(f"hardware={profile.name} measures on a Ray node with resource "
                            f"'{resource}', and the cluster has none")
        # The device gets exported files (it needs autoprune[bench] only). Restarted if it
        # dies; a hung one is restarted by its callers (BenchLatency).
        bench = DeviceBench.options(resources={resource: 1}, max_restarts=-1,
                                    max_task_retries=-1).remote(bench_settings(profile))
        node = _bench_node(bench, profile)
        state = _answer(bench.state.remote(), profile)
        plan = LatencyPlan("measured", f"Ray node {node[:12]} advertising '{resource}' "
                                       f"({describe(state)})",
                           bench, node=node, exported=True, device_state=state)
    else:
        plan = _bench_here(profile, example)
    if profile.measure_policy == "adaptive":
        from autoprune.search.adaptive import LatencyLearner

        plan.learner = LatencyLearner.options(scheduling_strategy=here()).remote(
            max_uncertainty=profile.measure.max_uncertainty)
    return plan


def _bench_here(profile: HardwareProfile, example: Any) -> LatencyPlan:
    """A bench on this machine, with the core gate that pauses training while it measures."""
    pin = here()
    gate_name = f"autoprune-core-gate-{os.getpid()}-{time.time_ns()}"
    gate = CoreGate.options(scheduling_strategy=pin, name=gate_name).remote()
    bench = Bench.options(scheduling_strategy=pin, max_restarts=-1,
                          max_task_retries=-1).remote(profile, example, gate_name)
    return LatencyPlan("measured", f"this machine ({profile.description}, "
                                   f"{profile.threads} thread(s), training paused meanwhile)",
                       bench, gate, node=_bench_node(bench, profile))


def _bench_node(bench: Any, profile: HardwareProfile) -> str:
    """The Ray node the bench started on; StudyFailed when it does not start in time."""
    return _answer(bench.node_id.remote(), profile)


def _answer(call: Any, profile: HardwareProfile) -> Any:
    """What a call to a starting bench returns; StudyFailed when it does not start in time."""
    try:
        return ray.get(call, timeout=profile.measure.timeout_s)
    except (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError) as exc:
        raise StudyFailed(f"the latency bench for hardware={profile.name} did not start within "
                          f"{profile.measure.timeout_s:g} s ({type(exc).__name__}); check the "
                          "device's Ray node") from exc


def here() -> Any:
    """A scheduling strategy that pins an actor to the driver's node."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(),
                                          soft=False)
