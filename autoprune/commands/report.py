"""`python -m autoprune report [run=<study run id or study name>]`: a finished study's front.

Reads the study back from MLflow (the latest study in the experiment unless `run` names one),
prints the Pareto front as a table, writes it as markdown with the plots regenerated, under
`report_dir/<study>/`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autoprune.config import Settings
from autoprune.errors import UserError
from autoprune.pruning import Policy
from autoprune.search.pareto import front_records
from autoprune.search.records import TrialRecord
from autoprune.search.reference import Reference
from autoprune.tasks import MAXIMIZE, Objective

SUMMARY = "print a finished study's Pareto front and write it as markdown with its plots"


def study_objective(study: Any) -> Objective:
    """The study's primary metric and direction, from its tags (accuracy for studies that
    predate them)."""
    tags = study.data.tags
    return Objective(tags.get("objective_metric", "accuracy"),
                     tags.get("objective_direction", MAXIMIZE))


def study_reference(study: Any) -> Reference:
    """The study's base-model numbers, from its metrics."""
    objective = study_objective(study)
    m, name = study.data.metrics, objective.metric
    nan = float("nan")
    return Reference(objective, m.get(f"base_{name}", nan), m.get("base_latency_ms", nan),
                     m.get(f"base_test_{name}", nan), m.get(f"base_{name}_finetuned"))


def find_study(client: Any, experiment: str, run: str | None) -> Any:
    """The study run named by id or study name (the latest study when `run` is None)."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise UserError(f"the MLflow store has no experiment {experiment!r}; run a search first")
    if run:
        quoted = str(run).replace("'", "")
        runs = client.search_runs([found.experiment_id],
                                  f"tags.role = 'study' and tags.study = '{quoted}'")
        if runs:
            return runs[0]
        try:  # not a study's name: perhaps its run id
            by_id = client.get_run(quoted)
        except Exception:
            by_id = None
        if by_id is None or by_id.data.tags.get("role") != "study":
            raise UserError(f"no study run {run!r} in experiment {experiment!r}")
        return by_id
    runs = client.search_runs([found.experiment_id], "tags.role = 'study'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise UserError(f"experiment {experiment!r} holds no study yet; run a search first")
    return runs[0]


def study_records(client: Any, study: Any) -> tuple[list[TrialRecord], dict[int, float]]:
    """The study's trials as TrialRecords (in trial order) and the front's test scores."""
    test_key = f"test_{study_objective(study).metric}"
    trials = client.search_runs([study.info.experiment_id],
                                f"tags.mlflow.parentRunId = '{study.info.run_id}'",
                                max_results=50000)
    records, test = [], {}
    for t in trials:
        tags, metrics = t.data.tags, t.data.metrics
        number = int(tags["trial_number"])
        params = dict(t.data.params)
        try:
            summary = Policy.from_params(params).summary()
        except Exception:  # a policy this version cannot read back is still listed
            summary = ""
        records.append(TrialRecord(
            number, params, tags.get("state", "failed"),
            {k: v for k, v in metrics.items() if not k.startswith(("test_", "val_full_"))},
            latency_source=tags.get("latency_source", ""), summary=summary,
            error=tags.get("error", ""), pareto=tags.get("pareto") == "true",
            feasible=tags.get("feasible", "true") == "true", run_id=t.info.run_id))
        if test_key in metrics:
            test[number] = metrics[test_key]
    records.sort(key=lambda r: r.number)
    return records, test


def markdown(study: Any, front: list[TrialRecord], test: dict[int, float],
             records: list[TrialRecord]) -> str:
    base = study_reference(study)
    objective, fmt = base.objective, base.objective.format
    m, tags = study.data.metrics, study.data.tags
    better = "higher" if objective.maximize else "lower"
    lines = [f"# {tags.get('study', study.info.run_id)}\n",
             f"MLflow run `{study.info.run_id}`; hardware `{tags.get('hardware', '?')}`, latency "
             f"{tags.get('latency_source', '?')}; {sum(r.state == 'complete' for r in records)} "
             f"completed, {sum(r.state == 'failed' for r in records)} failed, "
             f"{sum(r.state == 'stopped' for r in records)} stopped early. Metric: "
             f"{objective.metric} ({better} is better).\n",
             "![Pareto front](pareto_front.png)\n",
             f"| trial | val {objective.metric} | test {objective.metric} | latency (ms) | "
             "speedup | params | policy |",
             "|---|---|---|---|---|---|---|",
             f"| base | {fmt(base.metric)} | {fmt(base.test_metric)} | "
             f"{base.latency_ms:.3f} | 1.00x | {m.get('base_params', float('nan')):,.0f} | "
             "unpruned |"]
    if base.finetuned is not None:
        lines.append(f"| base | {fmt(base.finetuned)} | - | {base.latency_ms:.3f} | 1.00x | "
                     f"{m.get('base_params', float('nan')):,.0f} | unpruned, fine-tuned like "
                     "a trial |")
    for r in front:
        t = test.get(r.number)
        lines.append(f"| {r.number} | {fmt(r.metrics[objective.metric])} | "
                     f"{'-' if t is None else fmt(t)} | "
                     f"{r.metrics['latency_ms']:.3f} | {r.metrics.get('speedup', 0):.2f}x | "
                     f"{r.metrics.get('params', 0):,.0f} | {r.summary} |")
    return "\n".join(lines) + "\n"


def run(settings: Settings, output_dir: str) -> None:
    """Print the front, write `report.md` and the plots."""
    from mlflow.tracking import MlflowClient

    from autoprune.terminal import front_table
    from autoprune.tracking.mlflow import check_store_exists
    from autoprune.tracking.plots import plot_front_html, plot_front_png, write_front_csv

    check_store_exists(settings.tracking.uri)
    client = MlflowClient(tracking_uri=settings.tracking.uri)
    study = find_study(client, settings.tracking.experiment, settings.raw.get("run"))
    records, test = study_records(client, study)
    base = study_reference(study)
    front = front_records(records, base.objective)
    name = study.data.tags.get("study", study.info.run_id)
    folder = Path(str(settings.raw.get("report_dir", "reports"))) / name
    folder.mkdir(parents=True, exist_ok=True)
    print(f"Pareto front of {name} ({len(front)} of {len(records)} trials; MLflow run "
          f"{study.info.run_id})")
    if front:
        print(front_table(front, test, base))
        title = f"{name}: {study.data.tags.get('hardware', '')}"
        plot_front_png(records, front, base, title, folder / "pareto_front.png")
        plot_front_html(records, front, base, title, folder / "pareto_front.html")
        write_front_csv(front, test, folder / "pareto_front.csv", base.objective)
    (folder / "report.md").write_text(markdown(study, front, test, records))
    print(f"written: {folder / 'report.md'} and the plots beside it")
