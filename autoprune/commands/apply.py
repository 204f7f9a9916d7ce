"""`python -m autoprune apply`: one front model of a finished study, made ready to deploy.

Picks a trial of the study (by number, or by a rule), rebuilds its pruned model from the base
model with the study's own config, fine-tunes it for longer, scores it on the held-out test
split, exports it (TorchScript and ONNX), checks the ONNX file with ONNX Runtime (its test
score and latency), and logs everything to MLflow as a run nested in the study, with the
model logged as an MLflow model (registered under `register` when given).
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from autoprune.config import Settings, parse_yaml, settings_from_dict
from autoprune.errors import UserError
from autoprune.search.records import TrialRecord
from autoprune.tasks import Objective
from autoprune.workload import Workload

SUMMARY = "rebuild, fine-tune longer, test, export and log one trial of a finished study"
RULES = ("knee", "best_under_latency", "fastest_meeting", "fastest_above_accuracy")


def choose(front: list[TrialRecord], records: list[TrialRecord], trial: int | None, rule: str,
           max_latency_ms: float | None, metric_limit: float | None,
           objective: Objective) -> TrialRecord:
    """The trial to apply: `trial` by number, else the rule's pick from the front."""
    if trial is not None:
        found = [r for r in records if r.number == trial and r.state == "complete"]
        if not found:
            done = sorted(r.number for r in records if r.state == "complete")
            raise UserError(f"the study has no completed trial {trial}; completed: "
                            f"{', '.join(map(str, done)) or 'none'}")
        return found[0]
    if not front:
        raise UserError("the study's front is empty: nothing to apply")
    name = objective.metric
    if rule == "best_under_latency":
        if max_latency_ms is None:
            raise UserError("rule=best_under_latency needs max_latency_ms=<ms>")
        within = [r for r in front if r.metrics["latency_ms"] <= max_latency_ms]
        if not within:
            raise UserError(f"no front trial is at or under {max_latency_ms} ms; the fastest "
                            f"takes {min(r.metrics['latency_ms'] for r in front):.4g} ms")
        return max(within, key=lambda r: objective.score(r.metrics[name]))
    if rule in ("fastest_meeting", "fastest_above_accuracy"):
        key = "metric_limit" if rule == "fastest_meeting" else "min_accuracy"
        if metric_limit is None:
            raise UserError(f"rule={rule} needs {key}=<the worst acceptable {name}>")
        meeting = [r for r in front if objective.meets(r.metrics[name], metric_limit)]
        if not meeting:
            best = objective.best(r.metrics[name] for r in front)
            raise UserError(f"no front trial reaches {name} {metric_limit}; the best has "
                            f"{best:.4f}")
        return min(meeting, key=lambda r: r.metrics["latency_ms"])
    return knee(front, objective)


def knee(front: list[TrialRecord], objective: Objective) -> TrialRecord:
    """The front trial farthest from the line joining the front's two ends (both axes scaled
    to [0, 1]): where giving up quality stops buying much speed."""
    scores = [objective.score(r.metrics[objective.metric]) for r in front]
    if len(front) <= 2:
        return front[max(range(len(front)), key=lambda i: scores[i])]
    xs = [r.metrics["latency_ms"] for r in front]
    x0, x1, y0, y1 = min(xs), max(xs), min(scores), max(scores)
    span_x, span_y = (x1 - x0) or 1.0, (y1 - y0) or 1.0
    points = [((x - x0) / span_x, (y - y0) / span_y) for x, y in zip(xs, scores, strict=True)]
    (ax, ay), (bx, by) = min(points), max(points)
    norm = ((bx - ax) ** 2 + (by - ay) ** 2) ** 0.5 or 1.0

    def distance(p: tuple[float, float]) -> float:
        return abs((bx - ax) * (ay - p[1]) - (ax - p[0]) * (by - ay)) / norm

    return front[max(range(len(front)), key=lambda i: distance(points[i]))]


def study_settings(client: Any, study: Any, cache_dir: str) -> Settings:
    """The study's own settings, from its config.yaml artifact (cache_dir from this run)."""
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(study.info.run_id, "config.yaml", folder)
        except Exception as exc:
            raise UserError(f"study run {study.info.run_id} has no config.yaml artifact; it "
                            "was not written by a finished autoprune search") from exc
        raw = parse_yaml(Path(path).read_text(), "the study's config.yaml")
    raw["cache_dir"] = cache_dir
    return settings_from_dict(raw)


def _pick(settings: Settings, client: Any) -> tuple[Any, TrialRecord, Settings]:
    """The study, the chosen trial and the study's own settings."""
    from autoprune.commands.report import find_study, study_objective, study_records
    from autoprune.search.pareto import front_records
    from autoprune.tracking.mlflow import check_store_exists

    raw = settings.raw
    rule = str(raw.get("rule", "knee"))
    if rule not in RULES:
        raise UserError(f"unknown rule {rule!r}; choose one of: {', '.join(RULES)}")
    check_store_exists(settings.tracking.uri)
    study = find_study(client, settings.tracking.experiment, raw.get("run"))
    objective = study_objective(study)
    if rule == "fastest_above_accuracy" and objective.metric != "accuracy":
        raise UserError(f"rule=fastest_above_accuracy needs an accuracy study; this one's "
                        f"metric is {objective.metric}: use rule=fastest_meeting metric_limit=")
    records, _ = study_records(client, study)
    limit = raw.get("metric_limit") if rule != "fastest_above_accuracy" else \
        raw.get("min_accuracy")
    record = choose(front_records(records, objective), records, raw.get("trial"), rule,
                    raw.get("max_latency_ms"), limit, objective)
    return study, record, study_settings(client, study, settings.cache_dir)


def run(settings: Settings, output_dir: str) -> None:
    """Apply the chosen trial; see the module docstring."""
    from mlflow.tracking import MlflowClient

    from autoprune.commands.applied import apply_trial

    steps = settings.raw.get("steps")
    if steps is not None and int(steps) < 1:
        raise UserError(f"steps must be at least 1, got {steps}")
    client = MlflowClient(tracking_uri=settings.tracking.uri)
    study, record, original = _pick(settings, client)
    steps = int(steps) if steps is not None else 5 * max(original.finetune.steps, 1)
    name = original.raw.get("task", {}).get("name", "")
    print(f"applying trial {record.number} of {study.data.tags.get('study')}: "
          f"{record.summary} ({name}, {record.metrics['latency_ms']:.4g} ms in the study)",
          flush=True)
    apply_trial(settings, client, study, record, original, steps)


def onnx_test_score(path: Path, workload: Workload) -> float:
    """The task's primary metric of the ONNX file itself, run by ONNX Runtime on the test
    split."""
    from autoprune.export import OnnxRunner

    metrics = workload.task.evaluate(OnnxRunner(path), workload.eval_loader("test", False))
    return metrics[workload.task.metric]


def measured_profile(profile: Any) -> Any:
    """At least the default measurement effort: the number a deployment decision rests on."""
    m = profile.measure
    return dataclasses.replace(profile, measure=dataclasses.replace(
        m, warmup=max(m.warmup, 20), repeats=max(m.repeats, 15), number=max(m.number, 20)))

